# output-neutral: builds the one-line error messages of failed hub requests; nothing it returns is an output
"""One line for a failed Hugging Face Hub request that says what to do: log in for gated or private
repositories, check the id or revision when it does not exist, and offline advice only when the network
is what failed."""

from __future__ import annotations

GATED = ("GatedRepoError",)
MISSING = ("RepositoryNotFoundError", "RevisionNotFoundError", "RemoteEntryNotFoundError", "EntryNotFoundError",
           "DatasetNotFoundError")
OFFLINE = ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError", "Timeout",
           "ReadTimeout", "ConnectTimeout", "NameResolutionError")


def _chain(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def explain_hub_error(exc: BaseException, key: str, what: str, repo_type: str) -> str:
    """`key`: the params key to change; `what`: e.g. "'org/name' (revision main)"; `repo_type`: model | dataset."""
    names = {type(e).__name__ for e in _chain(exc)}
    text = " ".join(str(e) for e in _chain(exc)).lower()
    page = "dataset page" if repo_type == "dataset" else "model page"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if names & set(GATED) or "gated" in text or status in (401, 403):
        return (f"{key}: {what} is gated or private on the Hugging Face Hub: accept its terms on the {page} "
                "(https://huggingface.co/<id>) with your account, then log in here with `hf auth login` or set "
                "HF_TOKEN to an access token")
    if names & set(OFFLINE) or "offline" in text or "connection" in text or "resolve host" in text:
        return (f"{key}: cannot reach the Hugging Face Hub for {what} ({type(exc).__name__}). Without network "
                "access, set HF_HUB_OFFLINE=1 with it in the Hugging Face cache, or download it elsewhere and use "
                f"{key.split('.')[0]}.source: local")
    if names & set(MISSING) or status == 404:
        return (f"{key}: {what} does not exist on the Hugging Face Hub (or the revision is wrong); check the id "
                "and revision (a private repository also answers 'not found' until you log in: `hf auth login`)")
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{key}: cannot load {what} from the Hugging Face Hub: {type(exc).__name__}: {first}"
