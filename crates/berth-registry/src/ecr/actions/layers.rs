//! Layers: availability, the part-by-part upload, and download URLs.

use super::*;

impl Ctx<'_> {
    pub(super) async fn check_layers(&self, req: LayersRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:BatchCheckLayerAvailability",
            )
            .await?;
        if req.layer_digests.is_empty() || req.layer_digests.len() > 100 {
            return Err(EcrError::constraint(
                "layerDigests",
                &req.layer_digests.len().to_string(),
                "Member must have length between 1 and 100",
            ));
        }
        let (mut layers, mut failures) = (Vec::new(), Vec::new());
        for d in &req.layer_digests {
            let Some(digest) = parse_digest(d) else {
                failures.push(json!({
                    "layerDigest": d,
                    "failureCode": if d.is_empty() { "MissingLayerDigest" } else { "InvalidLayerDigest" },
                    "failureReason": if d.is_empty() { "Missing layer digest" } else { "Invalid layer digest" },
                }));
                continue;
            };
            match self.reg.blob_present(&repo, &digest).await? {
                Some(size) => layers.push(json!({
                    "layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": size,
                })),
                None => {
                    layers.push(json!({ "layerDigest": d, "layerAvailability": "UNAVAILABLE" }))
                }
            }
        }
        Ok(json!({ "layers": layers, "failures": failures }))
    }

    pub(super) async fn initiate_upload(&self, req: RepoRequest) -> Result<Value, EcrError> {
        self.check_registry(req.registry_id.as_ref())?;
        let repo = self.name(&req.repository_name)?;
        self.allow_repo("ecr:InitiateLayerUpload", &repo, &[])
            .await?;
        let id = self.reg.start_upload(&repo).await.map_err(|e| match e {
            RegistryError::NameUnknown(_) => self.not_found(repo.as_str()),
            e => e.into(),
        })?;
        Ok(json!({ "uploadId": id.to_string(), "partSize": SUGGESTED_PART }))
    }

    pub(super) async fn upload_part(&self, req: UploadPartRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:UploadLayerPart",
            )
            .await?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(req.layer_part_blob.as_bytes())
            .map_err(|e| {
                EcrError::serialization(format!("layerPartBlob is not valid base64: {e}"))
            })?;
        if data.len() > MAX_PART {
            return Err(EcrError::new(
                "LimitExceededException",
                format!(
                    "A layer part may be at most {MAX_PART} bytes; this one has {}",
                    data.len()
                ),
            ));
        }
        let invalid = |reason: String, last_valid: u64| {
            EcrError::new("InvalidLayerPartException", reason)
                .with("registryId", json!(self.registry_id()))
                .with("repositoryName", json!(repo.as_str()))
                .with("uploadId", json!(req.upload_id))
                .with("lastValidByteReceived", json!(last_valid))
        };
        let status = self
            .reg
            .upload_status(&repo, &req.upload_id)
            .await
            .map_err(|e| self.upload_error(&req.upload_id, e))?;
        let last_valid = status.size.saturating_sub(1);
        let len = data.len() as u64;
        let covered = req
            .part_last_byte
            .checked_sub(req.part_first_byte)
            .and_then(|n| n.checked_add(1));
        if data.is_empty() || covered != Some(len) {
            return Err(invalid(
                format!(
                    "The layer part covers bytes {}-{} but carries {len} bytes",
                    req.part_first_byte, req.part_last_byte
                ),
                last_valid,
            ));
        }
        if req.part_first_byte != status.size {
            return Err(invalid(
                format!(
                    "The part's first byte {} is not consecutive to the last byte of the previous part ({} bytes received)",
                    req.part_first_byte, status.size
                ),
                last_valid,
            ));
        }
        let body: berth_store::ByteStream =
            Box::pin(futures::stream::once(async move { Ok(Bytes::from(data)) }));
        let st = self
            .reg
            .append_part(
                &repo,
                &req.upload_id,
                (req.part_first_byte, req.part_last_byte),
                MIN_PART,
                body,
            )
            .await
            .map_err(|e| match e {
                RegistryError::RangeNotSatisfiable { offset, .. } => invalid(
                    "The part's first byte is not consecutive to the previous part".into(),
                    offset.saturating_sub(1),
                ),
                e => self.upload_error(&req.upload_id, e),
            })?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "uploadId": req.upload_id,
            "lastByteReceived": st.size.saturating_sub(1),
        }))
    }

    pub(super) fn upload_error(&self, id: &str, e: RegistryError) -> EcrError {
        match e {
            RegistryError::UploadUnknown => EcrError::new(
                "UploadNotFoundException",
                format!("The upload with id '{id}' is not found"),
            ),
            e => e.into(),
        }
    }

    pub(super) async fn complete_upload(
        &self,
        req: CompleteUploadRequest,
    ) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:CompleteLayerUpload",
            )
            .await?;
        let [d] = req.layer_digests.as_slice() else {
            return Err(EcrError::constraint(
                "layerDigests",
                &req.layer_digests.len().to_string(),
                "Member must contain exactly one digest",
            ));
        };
        let digest = parse_digest(d).ok_or_else(|| {
            EcrError::new(
                "InvalidLayerException",
                format!("Invalid layer digest '{d}'"),
            )
        })?;
        // A retry after a crash between committing the blob and linking it: link it now.
        if self
            .reg
            .recover_committed_upload(&repo, &req.upload_id, &digest)
            .await
            .map_err(|e| self.upload_error(&req.upload_id, e))?
            .is_some()
        {
            return Ok(json!({
                "registryId": self.registry_id(),
                "repositoryName": repo.as_str(),
                "uploadId": req.upload_id,
                "layerDigest": digest.to_string(),
            }));
        }
        let status = self
            .reg
            .upload_status(&repo, &req.upload_id)
            .await
            .map_err(|e| self.upload_error(&req.upload_id, e))?;
        if status.size == 0 {
            return Err(EcrError::new(
                "EmptyUploadException",
                format!(
                    "The upload with id '{}' does not contain any layer parts",
                    req.upload_id
                ),
            ));
        }
        let short_part = self
            .reg
            .meta()
            .upload(&status.id)
            .await
            .map_err(store)?
            .is_some_and(|u| u.has_short_part(status.size));
        if short_part {
            return Err(EcrError::new(
                "LayerPartTooSmallException",
                format!("Layer parts other than the last must be at least {MIN_PART} bytes"),
            ));
        }
        if self
            .reg
            .meta()
            .blob_in_repo(&repo, &digest)
            .await
            .map_err(store)?
            .is_some()
        {
            let _ = self.reg.cancel_upload(&repo, &req.upload_id).await;
            return Err(EcrError::new(
                "LayerAlreadyExistsException",
                format!(
                    "The layer '{digest}' already exists in the repository with name '{repo}' in registry with id '{}'",
                    self.registry_id()
                ),
            ));
        }
        let empty: berth_store::ByteStream = Box::pin(futures::stream::empty());
        let result = self
            .reg
            .complete_upload(&repo, &req.upload_id, &digest, None, Some(0), empty)
            .await;
        result.map_err(|e| match e {
            RegistryError::DigestInvalid(m) => EcrError::new("InvalidLayerException", m),
            e => self.upload_error(&req.upload_id, e),
        })?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "uploadId": req.upload_id,
            "layerDigest": digest.to_string(),
        }))
    }

    pub(super) async fn download_url(&self, req: DownloadUrlRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:GetDownloadUrlForLayer",
            )
            .await?;
        let digest = parse_digest(&req.layer_digest).ok_or_else(|| {
            EcrError::constraint(
                "layerDigest",
                &req.layer_digest,
                "Member must satisfy regular expression pattern: [a-zA-Z0-9-_+.]+:[a-fA-F0-9]+",
            )
        })?;
        if self
            .reg
            .meta()
            .blob_in_repo(&repo, &digest)
            .await
            .map_err(store)?
            .is_none()
        {
            return Err(EcrError::new(
                "LayersNotFoundException",
                format!(
                    "The layer '{digest}' does not exist in the repository with name '{repo}' in the registry with id '{}'",
                    self.registry_id()
                ),
            ));
        }
        if let Some(url) = self
            .reg
            .blob_redirect(&digest)
            .await
            .map_err(EcrError::from)?
        {
            return Ok(json!({ "downloadUrl": url, "layerDigest": digest.to_string() }));
        }
        let mut url = format!("{}/v2/{repo}/blobs/{digest}", self.reg.proxy_endpoint());
        if let Some(key) = &self.caller.access_key {
            let issued = self
                .reg
                .keys
                .token
                .issue_scoped(
                    key,
                    self.caller.key_version,
                    Some(&download_scope(repo.as_str(), &digest.to_string())),
                    self.reg.clock.now(),
                    DOWNLOAD_URL_TTL,
                )
                .map_err(|e| EcrError::server(format!("issuing a download token: {e}")))?;
            url.push_str("?X-Berth-Token=");
            url.push_str(issued.password.expose());
        }
        Ok(json!({ "downloadUrl": url, "layerDigest": digest.to_string() }))
    }
}
