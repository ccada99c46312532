"""Client profiles (issue 5): date of birth, phone, emergency contact and home jurisdiction;
encrypted where it is PHI, visible to the client and to therapists they have sessions with."""
