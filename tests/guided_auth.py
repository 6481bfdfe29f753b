"""What `sam deploy --guided` asks about authentication, read with the SAM CLI's own check.

For every function route without an authorizer the guided deploy asks "<Function> has no
authentication. Is this okay? [y/N]", and Enter aborts the deploy. Run with the SAM CLI's Python
(its own virtual environment, `make check-template`): prints each route's verdict, exits 1 if any
would be asked about.

    .venv-sam/bin/python tests/guided_auth.py template.yaml
"""

import sys

from samcli.commands.deploy.auth_utils import auth_per_resource
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider


def main(template: str) -> int:
    stacks, _ = SamLocalStackProvider.get_stacks(template)
    verdicts = auth_per_resource(stacks)
    for resource, authorized in verdicts:
        print(f"{resource}: {'authorization defined' if authorized else 'NO AUTHORIZATION (sam deploy --guided asks)'}")
    return 0 if verdicts and all(authorized for _, authorized in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
