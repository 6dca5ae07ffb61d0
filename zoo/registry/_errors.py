"""The registry's errors: each names what went wrong and how to fix it."""


class RegistryError(Exception):
    """Base class of every registry error."""


class ManifestError(RegistryError, ValueError):
    """``checkpoints.json`` (or a model's ``config.json`` metadata) is malformed."""


class ModelNotFoundError(RegistryError, LookupError):
    """No published model has this name."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0])


class IntegrityError(RegistryError):
    """A file's sha256 or size differs from what the manifest pins (tampered or truncated)."""


class DownloadError(RegistryError):
    """A model could not be fetched: offline, unreachable endpoint, unknown repo or revision."""


class CheckpointFormatError(RegistryError):
    """A checkpoint this zoo cannot read: newer format, incompatible zoo version, bad files."""


class UnsupportedElementsError(RegistryError, ValueError):
    """A model was asked to run on elements it was not trained on."""


class UntrustedCodeError(RegistryError):
    """A checkpoint's config names code outside zoo's allow-list; loading it needs ``trust_remote_code=True``."""


class SupersededModelWarning(UserWarning):
    """The model loaded has a better-trained successor in the manifest (``superseded_by``)."""
