from resources.amplitude import AmplitudeExportResource
from resources.mixpanel import MixpanelExportResource
from resources.storage import LakeResource, WarehouseResource

__all__ = ["AmplitudeExportResource", "LakeResource", "MixpanelExportResource",
           "WarehouseResource"]
