"""The secret that signs survey links: from `[csat] secret_env`/`secret_file`, else
one generated once (secrets.token_hex) and kept in the `settings` table, so that
every instance sharing the database signs alike. Never logged."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maild.config import Config, read_csat_secret
from maild.store.models import Setting

SETTING_KEY = "csat_secret"


def survey_secret(session: Session, config: Config, environ: Mapping[str, str]) -> str:
    configured = read_csat_secret(config, environ)
    if configured is not None:
        return configured
    found = session.get(Setting, SETTING_KEY)
    if found is not None:
        return found.value
    try:
        with session.begin_nested():
            session.add(Setting(key=SETTING_KEY, value=secrets.token_hex(32)))
    except IntegrityError:  # another instance made it first: use theirs
        pass
    return session.get_one(Setting, SETTING_KEY).value
