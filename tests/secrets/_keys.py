"""Throwaway key material for tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def service_account_json(email: str = "sa@test-proj.iam.gserviceaccount.com") -> str:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "test-proj",
            "private_key_id": "0123456789abcdef",
            "private_key": rsa_pem(),
            "client_email": email,
            "client_id": "1234567890",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


def ed25519_keypair(directory: Path, name: str = "id_ed25519") -> tuple[Path, Path]:
    """Generate an OpenSSH ed25519 key pair with ssh-keygen (or cryptography as fallback)."""
    private = directory / name
    public = directory / f"{name}.pub"
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(private)],
            check=True,
            capture_output=True,
        )
    except (FileNotFoundError, subprocess.CalledProcessError):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.generate()
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
        )
        private.chmod(0o600)
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
            + b" test\n"
        )
    return private, public
