from django.contrib import admin
from django_otp.admin import OTPAdminSite

from api.models import User

# The admin site asks for the second factor too (invariant 5: staff reach protected data only
# after MFA); django-otp's form checks the code through TOTPDevice.verify_token.
admin.site.__class__ = OTPAdminSite


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ("id", "email", "role", "is_active", "date_joined")
    list_filter = ("role", "is_active")
    search_fields = ("email",)
    readonly_fields = ("id", "password", "date_joined", "last_login", "failed_login_count")
    exclude = ("user_permissions", "groups")
