"""Validates Kubernetes manifests offline against the Kubernetes JSON schemas that the PyPI
package kubernetes-validate bundles, strictly (an unknown field is an error, as
`kubectl apply`'s server-side field validation makes it), for every version given.

usage: validate_kubernetes.py --versions 1.30.0,1.37.0 [--no-schema-ok KIND ...] FILE...

Prints one line per object and version: `VALID <file> <kind>/<name> <version>`, `NOSCHEMA
<file> <kind>/<name>` (allowed only for the kinds given with --no-schema-ok: custom resources)
or `INVALID <file> <kind>/<name> <version>: <path>: <message>`. Exits 1 if any object is
invalid or has no schema without being allowed to, 2 on a usage error.
"""

import argparse
import sys

from kubernetes_validate import utils


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", required=True)
    parser.add_argument("--no-schema-ok", action="append", default=[])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    failed = False
    for filename in args.files:
        for resource in utils.resources_from_file(filename):
            name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
            for version in args.versions.split(","):
                try:
                    validated = utils.validate(resource, version, strict=True)
                    print(f"VALID {filename} {name} {validated}")
                except utils.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    print(f"INVALID {filename} {name} {e.version}: {path}: {e.message}")
                    failed = True
                except utils.SchemaNotFoundError:
                    print(f"NOSCHEMA {filename} {name}")
                    failed |= resource.get("kind") not in args.no_schema_ok
                    break
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
