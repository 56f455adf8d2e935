//! Images: describe, list, batch get and delete, put (the OCI manifest PUT's code path).

use super::*;

impl Ctx<'_> {
    pub(super) fn tag_filter(filter: Option<&ImageFilter>) -> Result<TagFilter, EcrError> {
        if let Some(s) = filter.and_then(|f| f.image_status.as_deref())
            && !["ACTIVE", "ARCHIVED", "ACTIVATING", "ANY"].contains(&s)
        {
            return Err(EcrError::constraint(
                "filter.imageStatus",
                s,
                "Member must satisfy enum value set: [ACTIVE, ARCHIVED, ACTIVATING, ANY]",
            ));
        }
        match filter.and_then(|f| f.tag_status.as_deref()) {
            None | Some("ANY") => Ok(TagFilter::Any),
            Some("TAGGED") => Ok(TagFilter::Tagged),
            Some("UNTAGGED") => Ok(TagFilter::Untagged),
            Some(other) => Err(EcrError::constraint(
                "filter.tagStatus",
                other,
                "Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]",
            )),
        }
    }

    pub(super) async fn images_page(
        &self,
        repo: &RepoName,
        req: &ImagesRequest,
        default: usize,
    ) -> Result<(Vec<ImageRecord>, Option<String>), EcrError> {
        let n = page_size(req.max_results, default)?;
        let filter = Self::tag_filter(req.filter.as_ref())?;
        let after = match &req.next_token {
            Some(t) => Some(
                Digest::parse(&decode_token(t)?)
                    .map_err(|_| EcrError::invalid("Invalid parameter at 'nextToken'"))?,
            ),
            None => None,
        };
        let mut page = self
            .reg
            .meta()
            .images(repo, filter, after.as_ref(), n + 1)
            .await
            .map_err(store)?;
        let next = if page.len() > n {
            page.truncate(n);
            page.last()
                .map(|i| encode_token(&i.manifest.digest.to_string()))
        } else {
            None
        };
        Ok((page, next))
    }

    pub(super) async fn describe_images(&self, req: ImagesRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:DescribeImages",
            )
            .await?;
        if let Some(ids) = &req.image_ids {
            if req.next_token.is_some() || req.max_results.is_some() || req.filter.is_some() {
                return Err(EcrError::invalid(
                    "Invalid parameter: imageIds cannot be combined with maxResults, nextToken or filter",
                ));
            }
            check_ids(ids)?;
            let mut out = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for id in ids {
                match self.resolve(&repo, id).await? {
                    Ok(img) => {
                        if seen.insert(img.manifest.digest.clone()) {
                            let mut detail = self.image_detail(&repo, &img);
                            self.add_scan(&repo, &mut detail).await?;
                            out.push(detail);
                        }
                    }
                    Err(("ImageNotFound", _)) => return Err(self.image_not_found(&repo, id)),
                    Err((_, reason)) => return Err(EcrError::invalid(reason)),
                }
            }
            return Ok(json!({ "imageDetails": out }));
        }
        let (page, next) = self.images_page(&repo, &req, 100).await?;
        let mut details = Vec::with_capacity(page.len());
        for i in &page {
            let mut detail = self.image_detail(&repo, i);
            self.add_scan(&repo, &mut detail).await?;
            details.push(detail);
        }
        let mut v = json!({ "imageDetails": details });
        if let Some(t) = next {
            v["nextToken"] = json!(t);
        }
        Ok(v)
    }

    pub(super) async fn list_images(&self, req: ImagesRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:ListImages",
            )
            .await?;
        let (page, next) = self.images_page(&repo, &req, 100).await?;
        let mut ids = Vec::new();
        for img in &page {
            let d = img.manifest.digest.to_string();
            if img.tags.is_empty() {
                ids.push(json!({ "imageDigest": d }));
            }
            for t in &img.tags {
                ids.push(json!({ "imageDigest": d, "imageTag": t }));
            }
        }
        let mut v = json!({ "imageIds": ids });
        if let Some(t) = next {
            v["nextToken"] = json!(t);
        }
        Ok(v)
    }

    pub(super) async fn batch_get_image(&self, req: BatchImagesRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:BatchGetImage",
            )
            .await?;
        check_ids(&req.image_ids)?;
        let accepted = req.accepted_media_types.unwrap_or_default();
        if accepted.len() > 100 {
            return Err(EcrError::constraint(
                "acceptedMediaTypes",
                &accepted.len().to_string(),
                "Member must have length less than or equal to 100",
            ));
        }
        let (mut images, mut failures) = (Vec::new(), Vec::new());
        for id in &req.image_ids {
            let img = match self.resolve(&repo, id).await? {
                Ok(img) => img,
                Err((code, reason)) => {
                    failures.push(
                        json!({"imageId": id.json(), "failureCode": code, "failureReason": reason}),
                    );
                    continue;
                }
            };
            if !accepted.is_empty() && !accepted.contains(&img.manifest.media_type) {
                failures.push(json!({
                    "imageId": id.json(),
                    "failureCode": "ImageNotFound",
                    "failureReason": format!(
                        "Requested image not found in an accepted media type (it is {})",
                        img.manifest.media_type
                    ),
                }));
                continue;
            }
            let bytes = self
                .reg
                .manifest_bytes(&img.manifest)
                .await
                .map_err(EcrError::from)?;
            self.reg.record_pull(&repo, &img.manifest).await;
            let mut image_id = json!({ "imageDigest": img.manifest.digest.to_string() });
            if let Some(t) = &id.image_tag {
                image_id["imageTag"] = json!(t);
            }
            images.push(json!({
                "registryId": self.registry_id(),
                "repositoryName": repo.as_str(),
                "imageId": image_id,
                "imageManifest": String::from_utf8_lossy(&bytes),
                "imageManifestMediaType": img.manifest.media_type,
            }));
        }
        Ok(json!({ "images": images, "failures": failures }))
    }

    pub(super) async fn batch_delete_image(
        &self,
        req: BatchImagesRequest,
    ) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:BatchDeleteImage",
            )
            .await?;
        check_ids(&req.image_ids)?;
        let (mut deleted, mut failures) = (Vec::new(), Vec::new());
        for id in &req.image_ids {
            let img = match self.resolve(&repo, id).await? {
                Ok(img) => img,
                Err((code, reason)) => {
                    failures.push(
                        json!({"imageId": id.json(), "failureCode": code, "failureReason": reason}),
                    );
                    continue;
                }
            };
            let digest = img.manifest.digest.clone();
            let outcome = match (&id.image_tag, id.image_digest.is_some()) {
                // A tag alone: that tag goes; the image goes with its last tag.
                (Some(t), false) => self.delete_tag_then_orphan(&repo, t).await,
                _ => self
                    .reg
                    .meta()
                    .delete_manifest(&repo, &digest)
                    .await
                    .map(|()| img.tags.clone()),
            };
            match outcome {
                Ok(tags) if tags.is_empty() => {
                    deleted.push(json!({ "imageDigest": digest.to_string() }));
                }
                Ok(tags) => {
                    for t in tags {
                        deleted.push(json!({ "imageDigest": digest.to_string(), "imageTag": t }));
                    }
                }
                Err(StoreError::InUse { by, .. }) => failures.push(json!({
                    "imageId": id.json(),
                    "failureCode": "ImageReferencedByManifestList",
                    "failureReason": format!("Requested image referenced by manifest list: [{by}]"),
                })),
                Err(StoreError::ManifestUnknown(_)) => failures.push(json!({
                    "imageId": id.json(),
                    "failureCode": "ImageNotFound",
                    "failureReason": "Requested image not found",
                })),
                Err(e) => return Err(store(e)),
            }
        }
        Ok(json!({ "imageIds": deleted, "failures": failures }))
    }

    /// Removes one tag; if the image has no tag left and nothing references it, it goes too
    /// (one transaction). Returns the tags removed.
    pub(super) async fn delete_tag_then_orphan(
        &self,
        repo: &RepoName,
        tag: &str,
    ) -> Result<Vec<String>, StoreError> {
        let t = Tag::parse(tag).map_err(|_| StoreError::ManifestUnknown(tag.to_owned()))?;
        self.reg.meta().untag(repo, &t).await?;
        Ok(vec![tag.to_owned()])
    }

    pub(super) async fn put_image(&self, req: PutImageRequest) -> Result<Value, EcrError> {
        self.check_registry(req.registry_id.as_ref())?;
        let repo = self.name(&req.repository_name)?;
        let limit = self.reg.config().max_manifest_size;
        if req.image_manifest.is_empty() || req.image_manifest.len() > limit {
            return Err(EcrError::constraint(
                "imageManifest",
                "…",
                &format!("Member must have length between 1 and {limit}"),
            ));
        }
        let tag = match &req.image_tag {
            Some(t) => Some(Tag::parse(t).map_err(|_| {
                EcrError::constraint("imageTag", t, "Member must be a valid image tag (1 to 128 of [A-Za-z0-9_.-], not starting with . or -)")
            })?),
            None => None,
        };
        let rec = self.allow_repo("ecr:PutImage", &repo, &[]).await?;
        let bytes = Bytes::from(req.image_manifest.into_bytes());
        let computed = Digest::sha256(&bytes);
        if let Some(d) = &req.image_digest {
            let given = parse_digest(d).ok_or_else(|| {
                EcrError::constraint("imageDigest", d, "Member must be a valid digest")
            })?;
            let recomputed = Digest::of(given.algorithm(), &bytes);
            if recomputed != given {
                return Err(EcrError::new(
                    "ImageDigestDoesNotMatchException",
                    format!(
                        "Provided digest {given} does not match the computed digest {recomputed}"
                    ),
                ));
            }
        }
        if rec.is_some() {
            let existing = match &tag {
                Some(t) => self
                    .reg
                    .meta()
                    .manifest_by_tag(&repo, t)
                    .await
                    .map_err(store)?
                    .map(|m| m.digest),
                None => self
                    .reg
                    .meta()
                    .manifest(&repo, &computed)
                    .await
                    .map_err(store)?
                    .map(|m| m.digest),
            };
            if existing.as_ref() == Some(&computed) {
                return Err(EcrError::new(
                    "ImageAlreadyExistsException",
                    format!(
                        "Image with digest '{computed}' and tag '{}' already exists in the repository with name '{repo}' in registry with id '{}'",
                        req.image_tag.as_deref().unwrap_or("null"),
                        self.registry_id()
                    ),
                ));
            }
        }
        let reference = match &tag {
            Some(t) => Reference::Tag(t.clone()),
            None => Reference::Digest(computed.clone()),
        };
        let put = self
            .reg
            .put_manifest(
                &repo,
                &reference,
                req.image_manifest_media_type.as_deref(),
                bytes.clone(),
            )
            .await
            .map_err(|e| self.put_error(&repo, e))?;
        let media_type = match self.reg.meta().manifest(&repo, &put.digest).await {
            Ok(Some(m)) => m.media_type,
            _ => req.image_manifest_media_type.unwrap_or_default(),
        };
        let mut image_id = json!({ "imageDigest": put.digest.to_string() });
        if let Some(t) = &req.image_tag {
            image_id["imageTag"] = json!(t);
        }
        Ok(json!({
            "image": {
                "registryId": self.registry_id(),
                "repositoryName": repo.as_str(),
                "imageId": image_id,
                "imageManifest": String::from_utf8_lossy(&bytes),
                "imageManifestMediaType": media_type,
            }
        }))
    }

    pub(super) fn put_error(&self, repo: &RepoName, e: RegistryError) -> EcrError {
        match e {
            RegistryError::TagImmutable { .. } => {
                EcrError::new("ImageTagAlreadyExistsException", e.to_string())
            }
            RegistryError::ManifestBlobUnknown(d) => EcrError::new(
                "LayersNotFoundException",
                format!(
                    "Layers with digests '[{d}]' required for pushing image into repository with name '{repo}' in the registry with id '{}' do not exist",
                    self.registry_id()
                ),
            ),
            RegistryError::ManifestChildUnknown(d) => EcrError::new(
                "ReferencedImagesNotFoundException",
                format!(
                    "Manifest references images that do not exist in repository '{repo}': [{d}]"
                ),
            ),
            RegistryError::NameUnknown(_) => self.not_found(repo.as_str()),
            RegistryError::ManifestInvalid(m) => {
                EcrError::invalid(format!("Invalid parameter at 'imageManifest': {m}"))
            }
            other => other.into(),
        }
    }
}
