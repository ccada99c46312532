"""``seed_demo`` step: the demo therapists get verified licences, profiles, session types and
weekly hours, so the directory and the slots endpoint show something on a development box.

Idempotent: a therapist who already has a profile is left as is. Everything is fake.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from scheduling import services
from scheduling.models import TherapistProfile

if TYPE_CHECKING:
    from api.management.commands.seed_demo import Demo

# key of the demo user -> (zone, jurisdiction, hours, profile fields, session types)
_THERAPISTS = {
    "therapist1": (
        "America/New_York",
        "US-NY",
        (9 * 60, 17 * 60),
        {
            "pronouns": "she/her",
            "bio": "Demo profile: anxiety and life transitions, practical CBT.",
            "specialties": ["anxiety", "life-transitions"],
            "modalities": ["cbt", "act"],
            "languages": ["en", "es"],
        },
        [("Individual session", 50, 15000, "video"), ("Consultation", 20, 0, "video")],
    ),
    "therapist2": (
        "Europe/London",
        "GB",
        (8 * 60, 14 * 60),
        {
            "pronouns": "he/him",
            "bio": "Demo profile: trauma-focused work with EMDR.",
            "specialties": ["trauma", "grief"],
            "modalities": ["emdr"],
            "languages": ["en", "fr"],
        },
        [("EMDR session", 60, 9000, "in_person")],
    ),
    "therapist3": (
        "Australia/Adelaide",
        "AU-SA",
        (10 * 60, 18 * 60),
        {
            "pronouns": "they/them",
            "bio": "Demo profile: couples and family therapy.",
            "specialties": ["couples", "family"],
            "modalities": ["gottman", "eft"],
            "languages": ["en"],
        },
        [("Couples session", 80, 22000, "video")],
    ),
}


def seed_scheduling(demo: Demo) -> None:
    admin = demo.users["admin"]
    for key, (zone, jurisdiction, hours, fields, session_types) in _THERAPISTS.items():
        user = demo.users[key]
        if TherapistProfile.objects.filter(user=user).exists():
            continue
        profile = services.therapist_profile_create(
            user=user, display_name=user.full_name, time_zone=zone, now=demo.now, **fields
        )
        services.availability_rules_replace(
            profile=profile,
            windows=[services.WeeklyWindowInput(day, *hours) for day in range(5)],
            now=demo.now,
        )
        for name, minutes, price, delivery in session_types:
            services.session_type_create(
                profile=profile,
                name=name,
                duration_minutes=minutes,
                price_minor=price,
                currency="USD",
                delivery=delivery,
                now=demo.now,
            )
        licence = services.licence_create(
            profile=profile,
            jurisdiction=jurisdiction,
            number=f"DEMO-{key.upper()}",
            expires_on=date(demo.now.year + 3, 1, 1),
            actor=user,
            request=None,
            now=demo.now,
        )
        services.licence_verify(licence_id=licence.pk, admin=admin, request=None, now=demo.now)
    demo.notes.append(
        "Directory: GET /api/v1/therapists/ lists the three demo therapists (verified licences "
        "in US-NY, GB and AU-SA; weekday hours in their own time zones)."
    )
