"""The base of every platform's option model (each lives in its platform's module, named on its spec in
platforms/registry.py): the publish options a target may carry for one platform (`{"pinterest": {"boardId": ...}}`).

Option models are part of the post request (request.py builds its per-platform fields from the registry), so
their names, fields and descriptions are the public tools/list schema: change them only on purpose. Credentials
models (what a connect stores, sealed at rest; secrets are SecretStr) live beside each connect flow.
"""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown fields are refused (a misspelt option would otherwise be dropped silently)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, populate_by_name=True)
