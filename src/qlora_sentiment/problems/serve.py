# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""`qlora-sentiment serve` flags refused before any model loads."""

from __future__ import annotations

from . import cli, index, rows_of, trigger

ROWS = rows_of(
    "serve",
    ("serve-port-in-use",
     'is already in use (another server?); stop it or pick another --port',
     'Stop the other server or pass another `--port` (exit code 4).',
     trigger("port_in_use"),
     '{host}:{port} is already in use (another server?); stop it or pick another --port'),
    ("serve-bad-port",
     'argument --port: must be in 1..65535, got 70000',
     'Use a port in 1..65535.',
     cli("serve", "--model", "no-model", "--port", "70000")),
    ("serve-max-batch",
     'argument --max-batch: must be >= 1, got 0',
     'Use at least 1 text per forward pass.',
     cli("serve", "--model", "no-model", "--max-batch", "0")),
    ("serve-max-wait-ms",
     'argument --max-wait-ms: must be at most 1,000, got 1e300',
     'Every `serve` number has a ceiling (`--help` lists them): a batch waits at most 1 s for company.',
     cli("serve", "--model", "no-model", "--max-wait-ms", "1e300")),
    ("serve-body-timeout",
     'argument --body-timeout: must be at most --request-timeout (30 s), got 60',
     "The body is received within the request's own time: raise `--request-timeout` too, or lower this.",
     cli("serve", "--model", "no-model", "--body-timeout", "60")),
    ("serve-wait-vs-timeout",
     'argument --max-wait-ms: must be less than --request-timeout (500 ms)',
     'A request that waits its whole time for a batch would always time out: lower `--max-wait-ms`.',
     cli("serve", "--model", "no-model", "--request-timeout", "0.5", "--max-wait-ms", "500")),
    ("serve-allowed-hosts",
     "argument --allowed-hosts: 'exa mple' is not a host name",
     'Give host names, IP addresses, `*.domain` or `*`, separated by commas (no spaces inside a name).',
     cli("serve", "--model", "no-model", "--allowed-hosts", "localhost,exa mple")),
    ("serve-max-connections-per-client",
     'argument --max-connections-per-client: must be >= 1, got 0',
     'Use 1 to 100,000 (default 100; more than `--max-connections` counts as `--max-connections`).',
     cli("serve", "--model", "no-model", "--max-connections-per-client", "0")),
)
bad_input = index(ROWS)
