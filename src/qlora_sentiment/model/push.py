"""`qlora-sentiment push`: upload an adapter or an export folder to the Hugging Face Hub with its model card."""

from __future__ import annotations

from pathlib import Path

from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.model.record import read_record


def push(folder: str | Path, repo_id: str, private: bool = True, revision: str | None = None, api=None) -> str:
    """Create the model repository if needed and upload the folder in one commit; returns the commit URL.

    The folder must be one this project wrote (its record is checked first), so a half-built folder never goes up.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    record = read_record(folder)
    if record.is_export and not (folder / "README.md").is_file():
        raise ModelError(f"{folder}: an export without its model card (README.md); run dvc repro export")
    api = api or HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", revision=revision,
                                 commit_message=f"qlora-sentiment: {'export' if record.is_export else 'adapter'} "
                                                f"({record.head} head, labels {', '.join(record.labels)})",
                                 ignore_patterns=[".*", "**/.*"])
    except Exception as exc:
        from qlora_sentiment.core.hub import explain_hub_error

        raise ModelError(explain_hub_error(exc, "--repo", f"'{repo_id}'", "model")) from None
    return getattr(info, "commit_url", None) or str(info)
