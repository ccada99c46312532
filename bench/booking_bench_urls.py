"""The API's routes plus ``GET /bench/bare``: authenticated like every endpoint (JWT, its token
family looked up), then one query. The yardstick ``bench/bench_booking.py`` compares with."""

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.urls import urlpatterns as api_urlpatterns
from scheduling.models import TherapistProfile


class BareView(APIView):
    def get(self, request: Request) -> Response:
        return Response({"therapists": TherapistProfile.objects.count()})


urlpatterns = [path("bench/bare", BareView.as_view()), *api_urlpatterns]
