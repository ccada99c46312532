"""Session notes (issue 5): the therapist's notes on a booking, encrypted at rest, versioned,
readable by their author only, and locked once signed. ``docs/bookings.md`` describes them."""
