"""Summarises an Autobahn report (kosoku writes index.json in the Autobahn
TestSuite's own format): one line per case group with its verdicts, then each
case that was not plainly OK. Exits non-zero if any case failed.

A case passes, as the Autobahn TestSuite counts it, when its behaviour is OK,
NON-STRICT or INFORMATIONAL and its closing behaviour OK or INFORMATIONAL."""

import collections
import json
import sys

GROUPS = {
    "1": "framing (text and binary)",
    "2": "pings and pongs",
    "3": "reserved bits",
    "4": "opcodes",
    "5": "fragmentation",
    "6": "UTF-8",
    "7": "close handshake",
    "9": "large messages, performance",
    "10": "auto-fragmentation",
    "12": "compression",
    "13": "compression",
}
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return [int(part) for part in case_id.split(".")]


def main(path):
    with open(path) as f:
        (cases,) = json.load(f).values()  # one agent: the server under test
    groups = collections.defaultdict(collections.Counter)
    notable, failed = [], []
    for case_id in sorted(cases, key=case_key):
        result = cases[case_id]
        behaviour, closing = result["behavior"], result["behaviorClose"]
        verdict = behaviour if behaviour != "OK" else closing
        groups[case_id.split(".")[0]][verdict] += 1
        if (behaviour, closing) != ("OK", "OK"):
            notable.append((case_id, behaviour, closing, result.get("remoteCloseCode")))
        if behaviour not in PASSING or closing not in PASSING_CLOSE:
            failed.append(case_id)

    print(f"{'group':<34} {'cases':>5}  verdicts")
    for group in sorted(groups, key=int):
        counts = groups[group]
        verdicts = ", ".join(f"{n} {v}" for v, n in counts.most_common())
        name = f"{group}. {GROUPS.get(group, '')}"
        print(f"{name:<34} {sum(counts.values()):>5}  {verdicts}")
    if notable:
        print("\nnot plainly OK (behaviour / close / the server's close code):")
        for case_id, behaviour, closing, code in notable:
            print(f"  {case_id:<8} {behaviour} / {closing} / {code}")
    print(f"\n{len(cases)} cases, {len(failed)} failed")
    if failed:
        print("FAILED: " + " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
