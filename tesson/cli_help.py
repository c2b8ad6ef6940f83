"""The help text of the command line: each verb's examples (its ``--help`` epilog), and the program's
name in usage, help and hints (``tesson``, or ``docker tesson`` when the plugin shim runs it)."""

from __future__ import annotations

import os
import re

from tesson.cli_verbs import VERBS

# The program's name in usage, help and hints: the `docker tesson` shim sets it, so a user who typed
# `docker tesson ...` is told `docker tesson ...` back.
PROG_ENV = "TESSON_PROG"


def program_name() -> str:
    return os.environ.get(PROG_ENV, "").strip() or "tesson"


def with_prog(text: str, prog: str) -> str:
    """``text`` with each ``tesson VERB`` (a command to type, in help or a hint) naming ``prog``
    instead; ``docker tesson VERB`` and other uses of the word are left as they are."""
    if prog == "tesson":
        return text
    verbs = "|".join(re.escape(v) for v in sorted(VERBS, key=len, reverse=True))
    return re.sub(rf"(?<!docker )(?<![\w.-])tesson (?=(?:{verbs}|help)\b|-)", prog + " ", text)


EXAMPLES = {
    "run": """examples:
  tesson run -p 8080:80 nginx                  one pinned nginx per core behind one balancer on :8080
  tesson run -g web -u numa -n 2 -p 80 myapp   two shards, one per NUMA node, in group 'web'
  tesson run --dry-run -u l3 myapp             print the plan (CPUs and memory nodes), start nothing""",
    "ps": """examples:
  tesson ps                                    every group: its frontend, its shards in Docker's columns
  tesson ps web --format 'table {{.Name}}\\t{{.CPUs}}\\t{{.Status}}'
  tesson ps -q --filter status=exited          the container IDs of the shards that exited

--format: table (the default view), json (one object per shard and line, as docker ps), or a
template as Docker's: 'table ' for a header, {{.Field}}, {{json .Field}}, {{json .}}, \\t for a tab.
Fields: .Group .Shard .Name .ID .Image .Status .State .CPUs .Mems .Ports
--json prints the whole document instead: every group with its shards and frontend, indented.""",
    "stop": """examples:
  tesson stop web                stop every shard and the front door; 'tesson start web' brings them back
  tesson stop -t 2 web           give the shards 2 seconds before they are killed
  tesson stop --purge web        stop and remove everything the group made""",
    "repair": """examples:
  tesson repair web              restart the shards that exited, recreate the ones that vanished
  tesson repair -g web           the same, the group given with -g""",
    "topology": """examples:
  tesson topology                the CPUs, caches and NUMA nodes tesson places shards on
  tesson topology --format json  the same as one JSON document
  tesson --fsroot /tmp/dump topology   a machine's saved /sys and /proc instead of this one's""",
    "demo-server": """examples:
  tesson run -p 8080:8080 tesson demo-server   a demo group: each shard says who answered
  tesson demo-server --port 9000               serve here, on port 9000""",
    "ls": """examples:
  tesson ls                      every group: name, status, image, size, frontend
  tesson ls -q                   only the names
  tesson ls --format json        one JSON object per group and line""",
    "logs": """examples:
  tesson logs web                every shard's log, merged in time order: 'web-0 | ...'
  tesson logs -f --tail 10 web   the last 10 lines of each shard, then follow
  tesson logs --since 10m -t web the last ten minutes, with Docker's time stamps""",
    "exec": """examples:
  tesson exec web sh                           a shell in shard 0 (-it on a terminal)
  tesson exec --index 1 web cat /proc/self/status
  tesson exec -g web -e DEBUG=1 -- env         -g works too; '--' ends tesson's options""",
    "stats": """examples:
  tesson stats web               live figures, refreshed every second (Ctrl-C to leave)
  tesson stats --no-stream web   one sample (about a second) and exit
  tesson stats --no-stream --format json web   one JSON object per shard and line""",
    "top": """examples:
  tesson top web                 the processes of every shard, shard by shard
  tesson top -g web              the same, the group given with -g""",
    "start": """examples:
  tesson stop web && tesson start web   stop a group, later start it again on the same CPUs
  tesson start -g web                   the same, the group given with -g""",
    "restart": """examples:
  tesson restart web             stop every container of the group, then start them again
  tesson restart -t 2 web        give the shards 2 seconds to stop before they are killed""",
    "scale": """examples:
  tesson scale -g web -n 4       plan web again for 4 shards: re-pin, add, drain and remove, live
  tesson scale web -n 2 --drain-timeout 10   give leaving shards 10 s for their open connections""",
    "update": """examples:
  tesson update -g web --image web:2          roll every shard to web:2, one at a time
  tesson update -g web --env LOG=debug --parallel 2   two shards at a time, one variable changed
  tesson update -g web --image web:3 --rollback all undo every shard replaced if one fails""",
    "version": """examples:
  tesson version                 tesson's version and the daemon's
  tesson version --format json   the same as one JSON object
  docker tesson version          the plugin's (the tesson image's) version and the daemon's""",
}
