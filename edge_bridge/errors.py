"""Exceptions raised by the core; `api/app.py` maps each `status_code` to a JSON error."""


class EdgeBridgeError(Exception):
    """Root of every error the core raises on purpose."""

    status_code = 500


class ConfigError(EdgeBridgeError):
    """A setting has a value the system cannot run with."""


class NotFoundError(EdgeBridgeError):
    """A referenced record does not exist."""

    status_code = 404


class ConflictError(EdgeBridgeError):
    """The change contradicts the current state (e.g. a room already has an active group)."""

    status_code = 409


class ForbiddenError(EdgeBridgeError):
    """The staff member may not do this."""

    status_code = 403


class ValidationError(EdgeBridgeError):
    """Input that names a bad field; nothing was changed."""

    status_code = 422


class ImportFileError(ValidationError):
    """An import file was refused; `problems` lists `record.field: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))
