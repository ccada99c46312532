"""The pre-call test's routes, included under ``/api/v1/`` by ``video/urls.py``."""

from django.urls import URLPattern, URLResolver, path

from video.precall import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("video/precall", views.PrecallStartView.as_view(), name="video-precall-start"),
    path("video/precall/offer", views.PrecallOfferView.as_view(), name="video-precall-offer"),
]
