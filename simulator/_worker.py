"""A member-building worker process (see ``archive.MemberWorkers``).

Reads one JSON job per line on stdin; for each writes the gzip member's length (8 bytes, big
endian) and bytes to stdout. It runs as a script, not with ``-m``, so it imports only
``generator.py`` from this folder: not the ``pipeline`` package (whose ``__init__`` may grow heavy),
and not the parent's ``__main__`` (which ``multiprocessing``'s spawn would re-import).
"""

import json
import os
import sys
from datetime import datetime

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import generator

    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        job = json.loads(line)
        switches = job.get("switches")
        data = generator.gzip_member(
            generator.MemberJob(
                project_id=job["project_id"],
                upload_hour=datetime.fromisoformat(job["hour"]),
                start=job["start"],
                stop=job["stop"],
                seed=job["seed"],
                profile=generator.HourProfile(**job["profile"]),
                gzip_level=job["gzip_level"],
                switches=None if switches is None else generator.IdSwitches.from_rows(switches),
            )
        )
        out.write(len(data).to_bytes(8, "big"))
        out.write(data)
        out.flush()
