from featsr_d2.modeling.meta_arch.featsr_rcnn import FeatSRRCNN, half_resolution
from featsr_d2.modeling.meta_arch.task_driven_sr import TaskDrivenSR
from featsr_d2.modeling.meta_arch.tdsr_config import add_tdsr_config

__all__ = ["FeatSRRCNN", "TaskDrivenSR", "add_tdsr_config", "half_resolution"]
