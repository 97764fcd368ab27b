"""Database credentials from AWS Secrets Manager, in the JSON that RDS and the rotation templates write.

RDS-managed master secrets hold ``{"username", "password"}``; the rotation templates add ``engine``,
``host``, ``port`` and ``dbname``. Only ``password`` is required here: the other coordinates may come
from flags or the stack's parameter. The password never leaves this module except to the Connector,
which masks it before it is used; error messages name the secret and the field, never a value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import BadInput, ConnectionFailed

SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:.+$")
POSTGRES_ENGINES = frozenset({"postgres", "postgresql", "aurora-postgresql"})
CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
# Secret field -> libpq parameter.
COORDINATES = {"host": "host", "port": "port", "username": "user", "dbname": "dbname"}
ACCESS_HINT = (
    "the role needs secretsmanager:GetSecretValue on this secret (the stack grants it for a database's "
    "secretArn), and kms:Decrypt on the secret's key when that key is customer managed (secretKmsKeyId)"
)


@dataclass(frozen=True)
class DatabaseSecret:
    secret_id: str
    version_id: str
    password: str = field(repr=False)
    coordinates: dict[str, str] = field(default_factory=dict)  # libpq names: host, port, user, dbname
    fields: tuple[str, ...] = ()  # the JSON keys present, for `doctor`


def secret_region(secret_id: str, region: str | None) -> str:
    """An ARN names its region; a name is looked up in the region given."""
    match = SECRET_ARN.match(secret_id)
    if match:
        return match["region"]
    if not region:
        raise BadInput(f"reading secret {secret_id} needs a region: --region, AWS_REGION, or the secret's full ARN")
    return region


class SecretReader:
    """Reads one secret with secretsmanager:GetSecretValue; the client is made on first use."""

    def __init__(self, secret_id: str, region: str) -> None:
        self.secret_id = secret_id
        self.region = region
        self._client: Any = None

    def read(self, stage: str = CURRENT) -> DatabaseSecret | None:
        """The secret at ``stage``; None only when an AWSPENDING version does not exist."""
        import botocore.exceptions

        if self._client is None:
            import boto3

            self._client = boto3.client("secretsmanager", region_name=self.region)
        name = self.secret_id
        try:
            response = self._client.get_secret_value(SecretId=name, VersionStage=stage)
        except botocore.exceptions.NoCredentialsError:
            raise ConnectionFailed(
                f"no AWS credentials to read secret {name}", hint="on a kit runner the instance role provides them"
            ) from None
        except botocore.exceptions.ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                if stage != CURRENT:
                    return None
                raise BadInput(f"secret {name} does not exist in {self.region}") from None
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("AccessDeniedException", "AccessDenied") or status == 403:
                raise ConnectionFailed(f"access denied reading secret {name}", hint=ACCESS_HINT) from None
            if code == "DecryptionFailure":
                raise ConnectionFailed(
                    f"secret {name} could not be decrypted: KMS refused its key",
                    hint="the role needs kms:Decrypt on the secret's key through Secrets Manager "
                    "(the stack grants it when the database names secretKmsKeyId)",
                ) from None
            if code == "InvalidRequestException":  # e.g. the secret is scheduled for deletion
                raise BadInput(f"secret {name} cannot be read now ({code}): is it scheduled for deletion?") from None
            raise ConnectionFailed(f"cannot read secret {name}: {code or err}") from None
        except botocore.exceptions.BotoCoreError as err:
            raise ConnectionFailed(f"cannot read secret {name}: {err}") from None
        return parse_secret(name, str(response.get("VersionId", "")), response.get("SecretString"))


def parse_secret(name: str, version_id: str, text: str | None) -> DatabaseSecret:
    """Check the secret's JSON; every message names the secret and the field, never a value."""
    if text is None:
        raise BadInput(f"secret {name} holds binary data; vpc-migrate reads a JSON SecretString")
    try:
        data = json.loads(text)
    except ValueError:
        raise BadInput(
            f"secret {name} is not JSON; expected an object with username and password "
            "(and host, port, dbname), as RDS and the rotation templates write"
        ) from None
    if not isinstance(data, dict):
        raise BadInput(f"secret {name} must hold a JSON object with username and password")
    password = data.get("password")
    if not isinstance(password, str) or not password:
        raise BadInput(f"secret {name} has no password field (a non-empty string)")
    engine = data.get("engine")
    if engine is not None and str(engine).lower() not in POSTGRES_ENGINES:
        raise BadInput(f"secret {name} is for engine {str(engine)[:40]!r}; vpc-migrate speaks PostgreSQL")
    coordinates: dict[str, str] = {}
    for key, param in COORDINATES.items():
        value = data.get(key)
        if value is None or value == "":
            continue
        if key == "port" and (isinstance(value, bool) or not str(value).isdigit()):
            raise BadInput(f"secret {name}: field port is not a number")
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise BadInput(f"secret {name}: field {key} must be a string")
        coordinates[param] = str(value)
    return DatabaseSecret(name, version_id, password, coordinates, tuple(sorted(data)))
