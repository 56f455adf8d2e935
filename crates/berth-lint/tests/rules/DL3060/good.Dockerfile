FROM node:20
RUN yarn install && yarn cache clean
