"""`python -m pipeline.params apply PROFILE` merges a profile (a partial params file, profiles/*.yaml) into
params.yaml, validated before it replaces the file (comments and key order kept); `python -m
pipeline.params check` validates params.yaml and prints the resolved values. The schema itself is
pipeline/core/params.py.
"""
from __future__ import annotations

import argparse
import sys

import yaml

from pipeline.core.params import ParamsError, apply_profile, load, to_dict


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.params", description="apply a profile to params.yaml, or check it")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="validate params.yaml and print the resolved values")
    ap_apply = sub.add_parser("apply", help="merge a profile file into params.yaml")
    ap_apply.add_argument("profile")
    args = ap.parse_args(argv)
    try:
        params = apply_profile(args.profile) if args.cmd == "apply" else load()
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(to_dict(params), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
