"""Before a rented GPU spends an hour: will its experiment get back, and does it have its data? The default DVC
remote exists, its plugin is installed, its credentials resolve and its bucket answers; the raw files a preset
reads are in git or tracked by DVC (so `dvc exp run --pull` fetches them). One line each, before anything
expensive: cloud/sky-train.yaml runs `qlora-sentiment preflight` before `dvc exp run`."""

from __future__ import annotations

from pathlib import Path

from qlora_sentiment.core.errors import ConfigError, DataError
from qlora_sentiment.problems.cloud import bad_input

ADD_REMOTE = ("add one where you launch from: `dvc remote add -d storage s3://<bucket>/<path>` (or gs://, azure://), "
              "commit .dvc/config, push, and launch again")
# where each plugin reads its credentials from (the task's secrets); docs/gpu.md "A rented GPU"
CREDENTIALS = {"s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (`--secret` at launch), an instance role or "
                     "`dvc remote modify --local <remote> profile <name>`",
               "gs": "GOOGLE_APPLICATION_CREDENTIALS (a service-account key file) or the machine's service account",
               "azure": "AZURE_STORAGE_CONNECTION_STRING, or `dvc remote modify --local <remote> account_name/"
                        "account_key`"}


def default_remote(repo):
    """The DVC repo's default remote (name, url, DVC remote object), or one line saying why there is none to use."""
    from dvc.config import NoRemoteError

    name = repo.config["core"].get("remote")
    if not name:
        raise ConfigError(bad_input("remote-missing").format(config=f"{repo.dvc_dir}/config", add_remote=ADD_REMOTE))
    url = repo.config["remote"].get(name, {}).get("url", "?")
    try:
        return name, url, repo.cloud.get_remote()
    except ImportError as exc:  # "s3 is supported, but requires 'dvc-s3' to be installed"
        raise ConfigError(bad_input("remote-plugin-missing").format(name=name, url=url, reason=exc)) from None
    except NoRemoteError as exc:
        raise ConfigError(f"DVC remote '{name}': {str(exc).splitlines()[0]}; {ADD_REMOTE}") from None


def check_remote(repo) -> str:
    """The default remote answers with the credentials this machine has: its url, or one line (ConfigError)."""
    name, url, remote = default_remote(repo)
    scheme = url.split("://", 1)[0]
    bucket = remote.path.split("/", 1)[0]  # s3/gs bucket, azure container: where the first push would fail
    try:
        remote.fs.ls(bucket) if scheme in CREDENTIALS else remote.fs.exists(remote.path)
    except FileNotFoundError:
        raise ConfigError(f"DVC remote '{name}' ({url}): the bucket '{bucket}' does not exist; create it or fix "
                          f"the url (`dvc remote modify {name} url ...`)") from None
    except Exception as exc:  # each plugin's own error types: botocore, google.auth, azure.core
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "credential" in f"{type(exc).__name__} {first}".lower() and scheme in CREDENTIALS:
            raise ConfigError(bad_input("remote-credentials").format(name=name, url=url, reason=first,
                                                                     credentials=CREDENTIALS[scheme])) from None
        raise ConfigError(f"DVC remote '{name}' ({url}) cannot be reached: {type(exc).__name__}: {first}") from None
    return url


def check_raw_data(repo, root: Path, data) -> None:
    """params `data` with source local: every file it reads is here, or tracked by DVC (fetched by --pull)."""
    if data.source != "local":
        return
    from dvc.exceptions import OutputNotFoundError

    folder = root / data.name
    files = [folder / name for name in data.splits.values()] if data.splits else [folder]
    for path in files:
        if path.exists():
            continue
        try:
            repo.find_outs_by_path(str(path), strict=False)  # a file inside a tracked folder too
        except OutputNotFoundError:
            where = path.relative_to(root)
            raise DataError(bad_input("raw-data-untracked").format(where=where, name=data.name)) from None


def preflight(root: Path, overrides: list[str]) -> str:
    """Both checks for the params `dvc exp run -S <overrides>` will compose; the remote's url."""
    from dvc.repo import Repo

    from qlora_sentiment.config import compose, params_from_dict

    params = params_from_dict(compose(root / "conf", overrides))
    repo = Repo(str(root))  # one DVC repo object for both checks
    check_raw_data(repo, root, params.data)
    return check_remote(repo)
