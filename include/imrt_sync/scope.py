"""Which GitLab namespaces hold the item bank: the configured group, and by default its subgroups."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GroupScope:
    """The group ``group`` (its full path) and, when ``include_subgroups``, every group below it.

    Legacy 0.1.46 kept every project whose ``path_with_namespace`` started with the group's path
    (``GitlabClientImpl.java:293-294``): the group, its subgroups, and also look-alike groups such as ``iat-old`` for
    ``iat``. The scope is decided by namespace instead: a namespace is in it when it is the group or, with
    subgroups, a descendant (GitLab full paths are hierarchical: ``iat/math`` is a subgroup of ``iat``).
    """

    group: str
    include_subgroups: bool = True

    def contains(self, namespace_full_path: str | None) -> bool:
        """Whether a project whose namespace has this full path belongs to the item bank."""
        if not namespace_full_path:
            return False
        if namespace_full_path == self.group:
            return True
        return self.include_subgroups and namespace_full_path.startswith(self.group + "/")

    def contains_project(self, path_with_namespace: str | None) -> bool:
        """Whether the project at ``path_with_namespace`` (``group/subgroup/project``) belongs to the item bank."""
        namespace, _, _ = (path_with_namespace or "").rpartition("/")
        return self.contains(namespace)

    def describe(self) -> str:
        return f"group {self.group} and its subgroups" if self.include_subgroups else f"group {self.group}"
