from resources.amplitude import AmplitudeExportResource
from resources.amplitude_storage import AmplitudeStorageResource
from resources.mixpanel import MixpanelExportResource
from resources.storage import LakeResource, WarehouseResource

__all__ = ["AmplitudeExportResource", "AmplitudeStorageResource", "LakeResource",
           "MixpanelExportResource", "WarehouseResource"]
