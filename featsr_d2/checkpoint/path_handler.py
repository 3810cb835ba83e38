"""The ``featsr://`` scheme on Detectron2's ``PathManager``: weights shipped inside installed
packages in another format, converted into the cache on first use; nothing is downloaded.

- ``featsr://imagenet/mobilenet_v2``: torchvision's ImageNet MobileNetV2 with the keys of
  ``FeatSRMobileNetV2`` (``backbone.*``); ``featsr://imagenet/mobilenet_v2_fpn``: the same with
  those of ``FeatSRMobileNetV2FPN`` (``backbone.bottom_up.*``); ``featsr://imagenet/mobilenet_v2_c4``:
  stage5 as the C4 heads' ``res5`` (``roi_heads.res5.*``), the rest as ``backbone.*``;
- ``featsr://realesrgan/x4plus`` (and ``featsr://realesrgan/x4plus-anime``): Real-ESRGAN's
  ``RRDBNet``, from its ncnn files.

:mod:`featsr_d2.checkpoint.torchvision_mobilenet_v2` and
:mod:`featsr_d2.checkpoint.realesrgan_ncnn` convert; :mod:`featsr_d2.checkpoint.converted_weights`
caches. One handler serves every name, registered once when :mod:`featsr_d2.checkpoint` is
imported, under featsr_d2's own scheme so that it cannot take another plugin's.
"""

from collections.abc import Callable

from detectron2.utils.file_io import PathManager

from featsr_d2.checkpoint import realesrgan_ncnn, torchvision_mobilenet_v2
from featsr_d2.checkpoint.converted_weights import ConvertedWeightsPathHandler

__all__ = ["URI_PREFIX", "FeatSRPathHandler", "register_featsr_path_handler"]

URI_PREFIX = "featsr://"
_REALESRGAN = "realesrgan/"

# featsr:// name -> (its file name in the cache, write the converted checkpoint to a path).
_SOURCES: dict[str, tuple[Callable[[], str], Callable[[str], None]]] = {
    **{
        name: (
            lambda name=name: torchvision_mobilenet_v2.cache_file(name),
            lambda out, name=name: torchvision_mobilenet_v2.write_imagenet_checkpoint(name, out),
        )
        for name in torchvision_mobilenet_v2.URI_NAMES
    },
    **{
        _REALESRGAN + name: (
            lambda name=name: realesrgan_ncnn.cache_file(name),
            lambda out, name=name: realesrgan_ncnn.write_realesrgan_checkpoint(out, name),
        )
        for name in realesrgan_ncnn.MODELS
    },
}


class FeatSRPathHandler(ConvertedWeightsPathHandler):
    """Resolves ``featsr://NAME`` (the names in the module docstring) to a converted checkpoint in
    :func:`~featsr_d2.checkpoint.converted_weights.cache_dir`, converting on first use
    (``force=True`` converts again)."""

    PREFIX = URI_PREFIX
    NAMES = tuple(_SOURCES)
    WHAT = "featsr_d2 weights"

    def _cache_file(self, name: str) -> str:
        return _SOURCES[name][0]()

    def _convert(self, name: str, out: str) -> None:
        _SOURCES[name][1](out)


def register_featsr_path_handler() -> None:
    """Register :class:`FeatSRPathHandler` on Detectron2's ``PathManager`` unless a handler of
    ``featsr://`` is there already (so a second import or call changes nothing)."""
    if URI_PREFIX not in PathManager._path_handlers:
        PathManager.register_handler(FeatSRPathHandler())
