from featsr_d2.modeling.meta_arch.featsr_rcnn import FeatSRRCNN
from featsr_d2.modeling.meta_arch.task_driven_sr import TaskDrivenSR

__all__ = ["FeatSRRCNN", "TaskDrivenSR"]
