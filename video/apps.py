from django.apps import AppConfig


class VideoConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "video"

    def ready(self) -> None:
        from scheduling.bookings import contributions
        from video.evidence import client_no_show_evidence, completion_evidence

        contributions.session_evidence_register(
            contributions.SessionEvidence(
                completion=completion_evidence, client_no_show=client_no_show_evidence
            )
        )
