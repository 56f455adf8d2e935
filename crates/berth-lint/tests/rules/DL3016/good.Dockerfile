FROM node:20
RUN npm install express@4.21.2 @types/node@20.1.0 && npm install
