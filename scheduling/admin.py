"""Read-mostly admin pages; licence verification goes through the audited API endpoint."""

from django.contrib import admin

from scheduling.models import ExternalCalendar, Licence, SessionType, TherapistProfile


@admin.register(TherapistProfile)
class TherapistProfileAdmin(admin.ModelAdmin):
    list_display = ["id", "display_name", "time_zone", "accepting_new_clients", "next_open_slot"]
    search_fields = ["display_name"]
    readonly_fields = ["next_open_slot", "availability_rank", "availability_computed_at"]


@admin.register(SessionType)
class SessionTypeAdmin(admin.ModelAdmin):
    list_display = ["id", "therapist", "name", "duration_minutes", "price_minor", "currency"]


@admin.register(Licence)
class LicenceAdmin(admin.ModelAdmin):
    list_display = ["id", "therapist", "jurisdiction", "expires_on", "verified_at"]
    list_filter = ["jurisdiction"]
    readonly_fields = ["verified_by", "verified_at"]  # verified only via the audited endpoint


@admin.register(ExternalCalendar)
class ExternalCalendarAdmin(admin.ModelAdmin):
    list_display = ["id", "therapist", "source", "url_host", "last_synced_at", "last_error"]
    exclude = ["url_encrypted", "content_encrypted"]
