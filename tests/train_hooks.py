"""Training hooks shared by the resume tests (importable: pytest puts tests/ on sys.path for its
conftest.py)."""

from detectron2.engine import HookBase


class StopAfter(HookBase):
    """Raises KeyboardInterrupt, like a killed job, once the hooks registered before it (the
    checkpointer among them) have run at ``iteration``."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            raise KeyboardInterrupt
