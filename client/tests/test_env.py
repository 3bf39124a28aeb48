"""SurrogateClient.from_env: the SLURM service job's service.env and admin.key (no server)."""
from __future__ import annotations

import pytest

from nas_surrogate_client import SurrogateClient, read_env_file


def _service_dir(tmp_path, url="http://node17:8123"):
    (tmp_path / "service.env").write_text(
        f"# written by service.sbatch\nSURROGATE_API_URL={url}\n"
        "export SURROGATE_BROKER_URL='redis://node17:6379/0'\n\n"
        "SURROGATE_DATABASE_URL=postgresql+psycopg://u@node17:5432/s\n")
    (tmp_path / "admin.key").write_text("sk-admin\n")
    return tmp_path


def test_reads_url_and_admin_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SURROGATE_API_KEY", raising=False)
    client = SurrogateClient.from_env(_service_dir(tmp_path))
    assert str(client.http.base_url).rstrip("/") == "http://node17:8123"
    assert client.headers == {"X-API-Key": "sk-admin"}
    env = read_env_file(tmp_path / "service.env")
    assert env["SURROGATE_BROKER_URL"] == "redis://node17:6379/0"


def test_key_precedence_and_data_dir_from_environment(tmp_path, monkeypatch):
    root = _service_dir(tmp_path)
    (tmp_path / "loop.key").write_text("sk-loop\n")
    monkeypatch.setenv("SURROGATE_DATA_DIR", str(root))
    monkeypatch.setenv("SURROGATE_API_KEY", "sk-env")
    assert SurrogateClient.from_env().headers["X-API-Key"] == "sk-env"
    assert SurrogateClient.from_env(key_file=tmp_path / "loop.key").headers["X-API-Key"] \
        == "sk-loop"
    assert SurrogateClient.from_env(api_key="sk-given").headers["X-API-Key"] == "sk-given"


def test_missing_service_env_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("SURROGATE_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="SURROGATE_DATA_DIR"):
        SurrogateClient.from_env()
    with pytest.raises(FileNotFoundError, match=r"service\.env"):
        SurrogateClient.from_env(tmp_path)
    (tmp_path / "service.env").write_text("SURROGATE_BROKER_URL=redis://x:6379/0\n")
    with pytest.raises(ValueError, match="SURROGATE_API_URL"):
        SurrogateClient.from_env(tmp_path)
