from resources.amplitude import AmplitudeExportResource
from resources.storage import LakeResource, WarehouseResource

__all__ = ["AmplitudeExportResource", "LakeResource", "WarehouseResource"]
