"""The claims the test identity provider puts in ID tokens and the userinfo answer (imported by django-oauth-toolkit
through ``OAUTH2_PROVIDER["OAUTH2_VALIDATOR_CLASS"]``, once Django is configured)."""

from __future__ import annotations

from oauth2_provider.oauth2_validators import OAuth2Validator


class GroupsClaimValidator(OAuth2Validator):
    """Standard profile and e-mail claims, and ``groups``: the names of the user's groups, as the user's entry in
    the configuration writes them (e.g. Keycloak's full paths ``/imrt/sync-automation``).

    ``groups`` comes with the ``openid`` scope, so with every token that has a userinfo answer at all, as Keycloak
    sends a group-membership mapper's claim of the client's dedicated scope whatever the client asks for.
    """

    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "openid"}

    def get_additional_claims(self, request):
        user = request.user
        return {
            "preferred_username": user.username,
            "name": user.get_full_name(),
            "given_name": user.first_name,
            "family_name": user.last_name,
            "email": user.email,
            "email_verified": bool(user.email),
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }
