-- AlterTable
ALTER TABLE "FederatedIdentity" ADD COLUMN     "mappedRoles" TEXT[] DEFAULT ARRAY[]::TEXT[];
