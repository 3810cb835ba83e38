"""A DetectionCheckpointer whose checkpoints and ``last_checkpoint`` tag are written atomically."""

import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

from featsr_d2.utils.file_io import atomic_write, atomic_write_text


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """Same files as :class:`DetectionCheckpointer`; a crash mid-save leaves the previous ones."""

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f), binary=True)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)
