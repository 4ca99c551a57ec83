"""Decoding photos into RGB pixels: the only module that opens image files.

Real folders hold junk (empty files, truncated JPEGs, text named .jpg, decompression
bombs, unreadable or vanished files); every such case becomes an ImageError with a
reason a person can act on, never a crash.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from lookalike.capture import Capture, capture_of
from lookalike.errors import RequestError

ImageFile.LOAD_TRUNCATED_IMAGES = False

# Phone formats: AVIF through Pillow's own plugin, HEIC/HEIF (every iPhone photo) through pillow-heif, which
# registers itself with Pillow (a 40 ms import); without it a HEIC file is reported as unreadable, naming it.
try:
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - pillow-heif is a dependency; a trimmed install may lack it
    HEIF_READER = False
else:
    register_heif_opener()
    HEIF_READER = True

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif",
                              ".heic", ".heif", ".avif"})
MIN_SIDE = 8
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
SHRINK_ABOVE = 8  # an image whose shorter side is this many times the target is shrunk right after decoding
SHRINK_TO = 4  # ... by a whole factor (box averages) that keeps its shorter side at least this many times the target
REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA"})


Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the upright photo (after its EXIF orientation)
SIDEWAYS = frozenset({5, 6, 7, 8})  # EXIF orientations whose upright photo swaps width and height


class ImageError(Exception):
    """A file that cannot be used as an image, with the reason why."""


@dataclass(frozen=True)
class DecodedImage:
    pixels: Image.Image  # RGB, already reduced towards the target size
    width: int  # original size, before any reduction
    height: int
    capture: Capture = Capture()  # what its EXIF says of when, with what and where it was taken


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_image(source: str | os.PathLike[str] | bytes, target_side: int = 224, crop: Box | None = None) -> DecodedImage:
    """Open a file (or bytes) as an upright RGB image whose shorter side is >= target_side; with `crop`, only that
    box of the upright photo, decoded finely enough that the box's shorter side is >= target_side (a box outside
    the photo is a RequestError)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _open_and_decode(source, target_side, crop)
    except (ImageError, RequestError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"decompression bomb refused (more than {MAX_PIXELS:,} pixels): {error}") from None
    except UnidentifiedImageError:
        hint = "" if HEIF_READER else " (HEIC/HEIF needs the pillow-heif package)"
        raise ImageError(f"not an image Pillow can read (unknown or unsupported format){hint}") from None
    except ValueError as error:
        if "Decompressed data too large" in str(error):  # a zTXt/iTXt/iCCP chunk that inflates without end
            raise ImageError(f"metadata bomb refused: a compressed text or profile chunk inflates past Pillow's "
                             f"limit ({error})") from None
        raise ImageError(f"corrupt or truncated image: {error}") from None
    except FileNotFoundError:
        raise ImageError("file not found (deleted or moved while indexing?)") from None
    except PermissionError:
        raise ImageError("permission denied: the file is not readable") from None
    except (OSError, SyntaxError) as error:
        raise ImageError(f"corrupt or truncated image: {error}") from None


def read_capture(path: str | os.PathLike[str]) -> Capture:
    """What a photo file's EXIF says of its capture, from its header (no pixels decoded); a file that is gone or no
    image says nothing (Capture())."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return capture_of(image.getexif())
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return Capture()


def _open_and_decode(source: str | os.PathLike[str] | bytes, target_side: int, crop: Box | None) -> DecodedImage:
    if isinstance(source, bytes | bytearray):
        if not source:
            raise ImageError("empty data (0 bytes)")
        return _decode(Image.open(io.BytesIO(source)), target_side, lambda: bytes(source), crop)
    _check_file(Path(source))
    with Image.open(source) as image:  # reads the header only: a huge file that is no image is never loaded
        return _decode(image, target_side, Path(source).read_bytes, crop)


def _check_file(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise ImageError(f"broken symbolic link (points to {os.readlink(path)})")
    if not path.exists():
        raise ImageError("file not found (deleted or moved while indexing?)")
    if path.stat().st_size == 0:
        raise ImageError("empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ImageError("permission denied: the file is not readable")


def _decode(image: Image.Image, target_side: int, read: Callable[[], bytes], crop: Box | None = None) -> DecodedImage:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"decompression bomb refused: {width}x{height} is more than {MAX_PIXELS:,} pixels")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"image too small ({width}x{height}); at least {MIN_SIDE}x{MIN_SIDE} pixels needed")
    exif = image.getexif()  # parsed from the header once: the orientation and the capture are read from it
    orientation, capture = exif.get(ExifTags.Base.Orientation, 1), capture_of(exif)
    if crop is not None:
        upright = (height, width) if orientation in SIDEWAYS else (width, height)
        target_side = region_side(crop, upright, target_side)
        return cropped(_decode(image, target_side, read), crop, upright)
    scaled = _scaled_jpeg(image, read, target_side, orientation)
    if scaled is not None:
        return DecodedImage(pixels=scaled, width=width, height=height, capture=capture)
    if image.format == "JPEG":
        _draft_for(image, target_side)
    image.seek(0)  # first frame of animations
    image.load()
    shrunk = _shrunk(image, target_side)
    upright = shrunk.transpose(ORIENTATIONS[orientation]) if orientation in ORIENTATIONS else shrunk
    return DecodedImage(pixels=to_rgb(upright), width=width, height=height, capture=capture)


def _shrunk(image: Image.Image, target_side: int) -> Image.Image:
    """A very large decoded image (a 36-megapixel PNG is 144 MB of RGBA) made smaller before the copies that
    orienting and converting to RGB make: by a whole factor, each pixel the average of a box, so its shorter
    side stays at least SHRINK_TO x target_side and the resize to the network's input reads about the same
    pixels. Smaller images are left exactly as decoded."""
    factor = min(image.size) // (SHRINK_TO * target_side)
    if min(image.size) < SHRINK_ABOVE * target_side or factor < 2:
        return image
    return (image if image.mode in REDUCIBLE_MODES else _reducible(image)).reduce(factor)


def _reducible(image: Image.Image) -> Image.Image:
    """A mode Image.reduce takes, in one full-size copy: a palette image (a GIF's frame) as RGB, or RGBA only
    when it has transparency, instead of to_rgb's three full-size RGBA copies (585 -> 200 MiB for 6000x6000)."""
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    return to_rgb(image)


def _scaled_jpeg(image: Image.Image, read: Callable[[], bytes], target_side: int,
                 orientation: int) -> Image.Image | None:
    """An RGB or grey JPEG decoded by libjpeg-turbo straight to the smallest of its eight-step scales (1/8, 2/8 ...
    7/8) whose shorter side is still >= target_side, upright; None for other images or without simplejpeg.

    Pillow's draft mode scales by halves only, so a 400x533 photo was decoded whole for a 224 crop: decoding it
    at 5/8 and resizing fewer pixels takes 0.99 instead of 1.48 ms per photo, on the cores the network needs."""
    if image.format != "JPEG" or image.mode not in ("RGB", "L") or min(image.size) <= target_side:
        return None
    try:
        import simplejpeg
    except ImportError:
        return None
    shorter = {"min_width": target_side} if image.width <= image.height else {"min_height": target_side}
    pixels = simplejpeg.decode_jpeg(read(), colorspace="RGB", min_factor=1, **shorter)  # strict: corrupt data raises
    decoded = Image.fromarray(pixels)
    return decoded.transpose(ORIENTATIONS[orientation]) if orientation in ORIENTATIONS else decoded


ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the transpose that makes the photo upright


def _draft_for(image: Image.Image, target_side: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while staying >= target_side (much faster)."""
    width, height = image.size
    scale = min(width, height) / target_side
    if scale >= 2:
        image.draft("RGB", (max(1, int(width / scale)), max(1, int(height / scale))))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any mode: palette, alpha (composited on white), CMYK, 16-bit, greyscale."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value * (1 / 256)).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")  # (converting copies even RGBA)
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize_and_crop(image: Image.Image, side: int, resize_side: int | None = None) -> Image.Image:
    """Resize the shorter side to resize_side (default: side), then take the centre side x side crop.

    Only the pixels of the crop are computed (Pillow's `box`; the filter still reads its neighbours outside
    it), the same image to within 1 grey level as resizing the whole photo first, and about a quarter faster
    (0.91 -> 0.67 ms for a 400x533 photo): ingestion decodes on the cores the network needs."""
    resize_side = resize_side or side
    width, height = image.size
    scale = resize_side / min(width, height)
    resized_width, resized_height = max(side, round(width * scale)), max(side, round(height * scale))
    left, top = (resized_width - side) // 2, (resized_height - side) // 2
    across, down = resized_width / width, resized_height / height
    box = (left / across, top / down, (left + side) / across, (top + side) / down)
    return image.resize((side, side), Image.Resampling.BILINEAR, box=box, reducing_gap=None)


# --- regions: a box of the upright photo -------------------------------------------------------------
def region_side(box: Box, upright: tuple[int, int], target_side: int) -> int:
    """The shorter side to decode the whole photo at so that the box's shorter side is still >= target_side (at
    most the photo's own); a box that is empty or not inside the upright photo is a RequestError."""
    x, y, width, height = box
    if width < 1 or height < 1 or x < 0 or y < 0 or x + width > upright[0] or y + height > upright[1]:
        raise RequestError(f"crop {x},{y},{width},{height} (x,y,width,height) is not inside the "
                           f"{upright[0]}x{upright[1]} photo (upright, after its EXIF orientation)")
    if min(width, height) < MIN_SIDE:
        raise RequestError(f"crop {width}x{height} is too small; at least {MIN_SIDE}x{MIN_SIDE} pixels needed")
    return min(min(upright), -(-target_side * min(upright) // min(width, height)))


def cropped(decoded: DecodedImage, box: Box, upright: tuple[int, int]) -> DecodedImage:
    """The box of a decoded photo (its pixels may be reduced: the box is scaled to them), as an image of its own."""
    across, down = decoded.pixels.width / upright[0], decoded.pixels.height / upright[1]
    x, y, width, height = box
    left, top = round(x * across), round(y * down)
    right = max(left + 1, round((x + width) * across))
    bottom = max(top + 1, round((y + height) * down))
    return DecodedImage(pixels=decoded.pixels.crop((left, top, right, bottom)), width=width, height=height,
                        capture=decoded.capture)
