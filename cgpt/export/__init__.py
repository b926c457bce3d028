"""To and from the Hugging Face GPT2LMHeadModel format, and the export check; its params section: params.py."""
