from django.apps import AppConfig


class BillingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "billing"

    def ready(self) -> None:
        from billing import checks  # noqa: F401 - registers the deploy checks
        from billing.selectors import (
            booking_session_payments_none,
            booking_session_payments_prefetch,
        )
        from billing.serializers import BookingPaymentOut, booking_payment_out
        from scheduling.bookings import contributions

        contributions.booking_payment_register(
            contributions.BookingPayment(
                prefetch=booking_session_payments_prefetch,
                none_yet=booking_session_payments_none,
                shown=booking_payment_out,
                schema=BookingPaymentOut(allow_null=True),
            )
        )
