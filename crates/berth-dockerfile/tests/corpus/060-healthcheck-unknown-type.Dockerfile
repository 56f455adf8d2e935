FROM nginx
HEALTHCHECK connect tcp 7000
