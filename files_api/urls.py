from __future__ import annotations

from rest_framework.routers import SimpleRouter

from files_api.views import FileViewSet

router = SimpleRouter(trailing_slash=False)
router.register("files", FileViewSet, basename="file")

urlpatterns = router.urls
