"""Run a statement plan on a current ClickHouse engine (chdb) and print the answers.

Input (stdin, JSON): {"database": str, "setup": [sql...], "steps": [{"name": str, "sql": str}...]}
Steps named "wait:<table>" poll system.mutations until that table has none pending.
Output (stdout, JSON): {"version": str, "results": {name: tab-separated text}}
Any failing statement exits non-zero with the statement and the server's error.
"""
import json
import sys
import tempfile
import time

from chdb import session


def main() -> int:
    plan = json.load(sys.stdin)
    db = plan["database"]
    with tempfile.TemporaryDirectory() as path:
        s = session.Session(path)
        run = lambda sql: s.query(sql, "TabSeparated").bytes().decode()
        try:
            run(f"CREATE DATABASE IF NOT EXISTS {db}")
            run(f"USE {db}")
            # Decimals as 18.16 prints them (19.9000, not 19.9): ta-query reads them as RowBinary
            # integers, so only this text comparison sees the difference.
            run("SET output_format_decimal_trailing_zeros = 1")
            version = run("SELECT version()").strip()
            for sql in plan["setup"]:
                run(sql)
            results = {}
            for step in plan["steps"]:
                name, sql = step["name"], step["sql"]
                if name.startswith("wait:"):
                    deadline = time.time() + 60
                    while run(sql).strip() != "0":
                        if time.time() > deadline:
                            raise RuntimeError(f"mutations on {name[5:]} still pending after 60 s")
                        time.sleep(0.05)
                    continue
                results[name] = run(sql)
        except Exception as e:  # noqa: BLE001 - report which statement failed
            print(f"chdb failed: {e}\nstatement: {locals().get('sql', '?')}", file=sys.stderr)
            return 1
        finally:
            s.close()
    json.dump({"version": version, "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
