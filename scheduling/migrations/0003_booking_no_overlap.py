from django.db import migrations

from scheduling.bookings.db import add_no_overlap_constraint, drop_no_overlap_constraint


class Migration(migrations.Migration):
    """PostgreSQL: no two blocking bookings of a therapist overlap (btree_gist exclusion
    constraint, see scheduling/bookings/db.py). A no-op on SQLite."""

    dependencies = [("scheduling", "0002_bookings_lifecycle_notes_profiles")]

    operations = [
        migrations.RunPython(add_no_overlap_constraint, drop_no_overlap_constraint, elidable=False)
    ]
