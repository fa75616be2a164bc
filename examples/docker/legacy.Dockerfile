# Built FROM node:16 (gallium), end of life 2023-09-11, on a floating major tag.
FROM node:16
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY . .
USER node
CMD ["node", "server.js"]
