"""amh-xtts: fine-tune Coqui XTTS v2 on Amharic."""
