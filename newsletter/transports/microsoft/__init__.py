"""The Microsoft identity platform (Entra ID): app-only OAuth2 tokens for SMTP and Graph
(`identity`) and the app registration's settings (`settings`). Importing the package loads
nothing but this line."""
