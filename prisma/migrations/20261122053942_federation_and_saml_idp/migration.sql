-- AlterTable
ALTER TABLE "SigningKey" ADD COLUMN     "certificate" TEXT,
ADD COLUMN     "purpose" TEXT NOT NULL DEFAULT 'oidc';

-- CreateTable
CREATE TABLE "Connection" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "preset" TEXT NOT NULL DEFAULT 'custom',
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "config" JSONB NOT NULL DEFAULT '{}',
    "clientSecret" TEXT,
    "spPrivateKey" TEXT,
    "spCertificate" TEXT,
    "domains" TEXT[],
    "requireSso" BOOLEAN NOT NULL DEFAULT false,
    "enforcesMfa" BOOLEAN NOT NULL DEFAULT false,
    "attributeMapping" JSONB NOT NULL DEFAULT '{}',
    "roleMapping" JSONB NOT NULL DEFAULT '{}',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Connection_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "FederatedIdentity" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "connectionId" UUID NOT NULL,
    "subject" TEXT NOT NULL,
    "userId" UUID NOT NULL,
    "email" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastLoginAt" TIMESTAMP(3),

    CONSTRAINT "FederatedIdentity_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ServiceProvider" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "entityId" TEXT NOT NULL,
    "acsUrls" TEXT[],
    "sloUrl" TEXT,
    "certificate" TEXT,
    "requireSignedRequests" BOOLEAN NOT NULL DEFAULT false,
    "encryptAssertions" BOOLEAN NOT NULL DEFAULT false,
    "signResponse" BOOLEAN NOT NULL DEFAULT true,
    "signAssertion" BOOLEAN NOT NULL DEFAULT true,
    "nameIdFormat" TEXT NOT NULL DEFAULT 'email',
    "attributeMapping" JSONB NOT NULL DEFAULT '{}',
    "assertionLifetimeSeconds" INTEGER NOT NULL DEFAULT 300,
    "allowIdpInitiated" BOOLEAN NOT NULL DEFAULT false,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "ServiceProvider_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Connection_tenantId_name_key" ON "Connection"("tenantId", "name");

-- CreateIndex
CREATE UNIQUE INDEX "Connection_tenantId_id_key" ON "Connection"("tenantId", "id");

-- CreateIndex
CREATE INDEX "FederatedIdentity_tenantId_userId_idx" ON "FederatedIdentity"("tenantId", "userId");

-- CreateIndex
CREATE UNIQUE INDEX "FederatedIdentity_connectionId_subject_key" ON "FederatedIdentity"("connectionId", "subject");

-- CreateIndex
CREATE UNIQUE INDEX "ServiceProvider_tenantId_entityId_key" ON "ServiceProvider"("tenantId", "entityId");

-- CreateIndex
CREATE UNIQUE INDEX "ServiceProvider_tenantId_name_key" ON "ServiceProvider"("tenantId", "name");

-- AddForeignKey
ALTER TABLE "Connection" ADD CONSTRAINT "Connection_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "FederatedIdentity" ADD CONSTRAINT "FederatedIdentity_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "FederatedIdentity" ADD CONSTRAINT "FederatedIdentity_tenantId_connectionId_fkey" FOREIGN KEY ("tenantId", "connectionId") REFERENCES "Connection"("tenantId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "FederatedIdentity" ADD CONSTRAINT "FederatedIdentity_tenantId_userId_fkey" FOREIGN KEY ("tenantId", "userId") REFERENCES "User"("tenantId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ServiceProvider" ADD CONSTRAINT "ServiceProvider_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;
