"""An example Plait plugin: the ``example.greet`` action and the ``example`` connection
type. See ``README.md`` and docs/integrations.md, "Writing a third-party action"."""

from plait_example.greet import GreetAction, GreeterConnection

__all__ = ["GreetAction", "GreeterConnection"]
