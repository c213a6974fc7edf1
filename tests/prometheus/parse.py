"""Parses an OpenMetrics exposition from stdin with prometheus_client's strict
parser (an implementation independent of the server's) and prints it as JSON:
{"<family>": {"type": ..., "help": ..., "samples": [[name, {labels}, value], ...]}}.
Exits non-zero, with the parser's message, on any violation of the format."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {
        "type": family.type,
        "help": family.documentation,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
json.dump(families, sys.stdout)
