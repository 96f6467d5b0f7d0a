"""Microsoft Graph sendMail: the transport (`send`) and its settings (`settings`). Its tokens
come from `transports.microsoft`. Importing the package loads nothing but this line."""
