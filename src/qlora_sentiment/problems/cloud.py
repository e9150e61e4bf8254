# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""`qlora-sentiment preflight` (cloud/sky-train.yaml's first step) in a clone-like repo with the project's conf/:
the repo's default DVC remote, preflight's overrides and the environment."""

from __future__ import annotations

from . import Trigger, index, rows_of, trigger


def preflight(remote: str | None, overrides: list | None = None, env: dict | None = None) -> Trigger:
    return trigger("preflight", remote=remote, overrides=overrides or [], env=env or {})


ROWS = rows_of(
    "cloud",
    ("remote-missing",
     'no default DVC remote in',
     "A rented GPU's experiment travels back through the DVC remote: `dvc remote add -d storage "
     's3://<bucket>/<path>`, commit `.dvc/config`, push, launch again (docs/gpu.md "A rented GPU").',
     preflight(None),
     'no default DVC remote in {config}: the trained model would die with the machine; {add_remote}'),
    ("remote-plugin-missing",
     "oss is supported, but requires 'dvc-oss' to be installed",
     "The locks carry DVC's S3, GCS and Azure plugins; for another storage add its plugin to pyproject.toml and "
     '`make lock`.',
     preflight("oss://bucket/dvc"),
     "DVC remote '{name}' ({url}): {reason}; the locks carry dvc-s3, dvc-gs and dvc-azure (`make install`), for "
     'another storage add its plugin to pyproject.toml and `make lock`'),
    ("remote-credentials",
     'no credentials (Unable to locate credentials); give',
     "Give the remote's credentials to the job: `--secret AWS_ACCESS_KEY_ID --secret AWS_SECRET_ACCESS_KEY` for "
     'S3 (GOOGLE_APPLICATION_CREDENTIALS for GCS, AZURE_STORAGE_CONNECTION_STRING for Azure).',
     preflight("s3://bucket/dvc", env={"AWS_EC2_METADATA_DISABLED": "true"}),
     "DVC remote '{name}' ({url}): no credentials ({reason}); give {credentials}"),
    ("raw-data-untracked",
     'it is neither in git nor tracked by DVC here',
     'Data in `data/raw/` reaches a rented machine through git or DVC: `dvc add data/raw/<name> && dvc push`, '
     'commit the `.dvc` file, push, launch again.',
     preflight(None, overrides=["experiment=absa_mams_llama31_8b"]),
     '{where}: data.name {name!r} reads it, and it is neither in git nor tracked by DVC here; where you have it: '
     '`dvc add {name} && dvc push`, commit {name}.dvc, push, and launch again (docs/gpu.md "Your data")'),
)
bad_input = index(ROWS)
