"""Initial catalog: exposures, rejections, associations, CRDS contexts, reference files,
best references, campaigns, jobs, job inputs, products and their references.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('associations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('asn_name', sa.String(length=128), nullable=False),
    sa.Column('asn_id', sa.String(length=64), nullable=False),
    sa.Column('asn_type', sa.String(length=32), nullable=False),
    sa.Column('asn_rule', sa.String(length=96), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('program', sa.String(length=16), nullable=True),
    sa.Column('product_name', sa.String(length=255), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('storage_path', sa.Text(), nullable=True),
    sa.Column('jwst_version', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('content_sha256')
    )
    with op.batch_alter_table('associations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_associations_asn_name'), ['asn_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_associations_program'), ['program'], unique=False)

    op.create_table('crds_contexts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('in_use', sa.Boolean(), nullable=False),
    sa.Column('in_use_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('crds_version', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('exposures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=128), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('storage_path', sa.Text(), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=True),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('program', sa.String(length=16), nullable=True),
    sa.Column('observtn', sa.String(length=8), nullable=True),
    sa.Column('visit', sa.String(length=8), nullable=True),
    sa.Column('visit_id', sa.String(length=16), nullable=True),
    sa.Column('exposure', sa.String(length=8), nullable=True),
    sa.Column('instrume', sa.String(length=16), nullable=False),
    sa.Column('detector', sa.String(length=16), nullable=True),
    sa.Column('exp_type', sa.String(length=32), nullable=False),
    sa.Column('readpatt', sa.String(length=32), nullable=True),
    sa.Column('subarray', sa.String(length=32), nullable=True),
    sa.Column('ngroups', sa.Integer(), nullable=True),
    sa.Column('nints', sa.Integer(), nullable=True),
    sa.Column('nframes', sa.Integer(), nullable=True),
    sa.Column('groupgap', sa.Integer(), nullable=True),
    sa.Column('filter', sa.String(length=16), nullable=True),
    sa.Column('pupil', sa.String(length=16), nullable=True),
    sa.Column('expstart', sa.Float(), nullable=True),
    sa.Column('date_obs', sa.String(length=32), nullable=True),
    sa.Column('time_obs', sa.String(length=32), nullable=True),
    sa.Column('targname', sa.String(length=64), nullable=True),
    sa.Column('stage1_pipeline', sa.String(length=32), nullable=False),
    sa.Column('header', sa.JSON(), nullable=False),
    sa.Column('pool_columns', sa.JSON(), nullable=True),
    sa.Column('pool_name', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('filename')
    )
    with op.batch_alter_table('exposures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exposures_detector'), ['detector'], unique=False)
        batch_op.create_index(batch_op.f('ix_exposures_exp_type'), ['exp_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_exposures_instrume'), ['instrume'], unique=False)
        batch_op.create_index(batch_op.f('ix_exposures_program'), ['program'], unique=False)

    op.create_table('ingest_rejections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('rejected_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ingest_rejections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ingest_rejections_filename'), ['filename'], unique=False)

    op.create_table('reference_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('reftype', sa.String(length=32), nullable=False),
    sa.Column('instrument', sa.String(length=16), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('path', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('reference_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reference_files_reftype'), ['reftype'], unique=False)

    op.create_table('association_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('association_id', sa.Integer(), nullable=False),
    sa.Column('product_name', sa.String(length=255), nullable=False),
    sa.Column('expname', sa.String(length=255), nullable=False),
    sa.Column('exptype', sa.String(length=32), nullable=False),
    sa.Column('exposure_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['association_id'], ['associations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['exposure_id'], ['exposures.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('association_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_association_members_association_id'), ['association_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_association_members_exposure_id'), ['exposure_id'], unique=False)

    op.create_table('bestrefs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('exposure_id', sa.Integer(), nullable=False),
    sa.Column('context_id', sa.Integer(), nullable=False),
    sa.Column('reftype', sa.String(length=32), nullable=False),
    sa.Column('reference_file_id', sa.Integer(), nullable=True),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['context_id'], ['crds_contexts.id'], ),
    sa.ForeignKeyConstraint(['exposure_id'], ['exposures.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reference_file_id'], ['reference_files.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('exposure_id', 'context_id', 'reftype')
    )
    with op.batch_alter_table('bestrefs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bestrefs_context_id'), ['context_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bestrefs_exposure_id'), ['exposure_id'], unique=False)

    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('selection', sa.JSON(), nullable=False),
    sa.Column('context_id', sa.Integer(), nullable=True),
    sa.Column('n_jobs', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['context_id'], ['crds_contexts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pipeline', sa.String(length=32), nullable=False),
    sa.Column('engine', sa.String(length=16), nullable=False),
    sa.Column('exposure_id', sa.Integer(), nullable=True),
    sa.Column('association_id', sa.Integer(), nullable=True),
    sa.Column('context_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('cal_version', sa.String(length=32), nullable=False),
    sa.Column('software_versions', sa.JSON(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('param_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('output_dir', sa.Text(), nullable=True),
    sa.Column('step_timings', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['association_id'], ['associations.id'], ),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.ForeignKeyConstraint(['context_id'], ['crds_contexts.id'], ),
    sa.ForeignKeyConstraint(['exposure_id'], ['exposures.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_exposure_pipeline', ['exposure_id', 'pipeline'], unique=False)
        batch_op.create_index('ix_jobs_status', ['status'], unique=False)

    op.create_table('job_inputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('exposure_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['exposure_id'], ['exposures.id'], ),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_inputs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_inputs_exposure_id'), ['exposure_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_inputs_job_id'), ['job_id'], unique=False)

    op.create_table('products',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('exposure_id', sa.Integer(), nullable=True),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('suffix', sa.String(length=16), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('supersedes_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['exposure_id'], ['exposures.id'], ),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.ForeignKeyConstraint(['supersedes_id'], ['products.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('path')
    )
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.create_index('ix_products_exposure_suffix_current', ['exposure_id', 'suffix', 'is_current'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_products_filename'), ['filename'], unique=False)
        batch_op.create_index(batch_op.f('ix_products_job_id'), ['job_id'], unique=False)

    op.create_table('product_references',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('reftype', sa.String(length=32), nullable=False),
    sa.Column('reference_file_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reference_file_id'], ['reference_files.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('product_id', 'reftype')
    )
    with op.batch_alter_table('product_references', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_product_references_product_id'), ['product_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_product_references_reference_file_id'), ['reference_file_id'],
                              unique=False)



def downgrade() -> None:
    with op.batch_alter_table('product_references', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_product_references_reference_file_id'))
        batch_op.drop_index(batch_op.f('ix_product_references_product_id'))

    op.drop_table('product_references')
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_products_job_id'))
        batch_op.drop_index(batch_op.f('ix_products_filename'))
        batch_op.drop_index('ix_products_exposure_suffix_current')

    op.drop_table('products')
    with op.batch_alter_table('job_inputs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_inputs_job_id'))
        batch_op.drop_index(batch_op.f('ix_job_inputs_exposure_id'))

    op.drop_table('job_inputs')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_status')
        batch_op.drop_index('ix_jobs_exposure_pipeline')

    op.drop_table('jobs')
    op.drop_table('campaigns')
    with op.batch_alter_table('bestrefs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bestrefs_exposure_id'))
        batch_op.drop_index(batch_op.f('ix_bestrefs_context_id'))

    op.drop_table('bestrefs')
    with op.batch_alter_table('association_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_association_members_exposure_id'))
        batch_op.drop_index(batch_op.f('ix_association_members_association_id'))

    op.drop_table('association_members')
    with op.batch_alter_table('reference_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reference_files_reftype'))

    op.drop_table('reference_files')
    with op.batch_alter_table('ingest_rejections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ingest_rejections_filename'))

    op.drop_table('ingest_rejections')
    with op.batch_alter_table('exposures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exposures_program'))
        batch_op.drop_index(batch_op.f('ix_exposures_instrume'))
        batch_op.drop_index(batch_op.f('ix_exposures_exp_type'))
        batch_op.drop_index(batch_op.f('ix_exposures_detector'))

    op.drop_table('exposures')
    op.drop_table('crds_contexts')
    with op.batch_alter_table('associations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_associations_asn_name'))
        batch_op.drop_index(batch_op.f('ix_associations_program'))

    op.drop_table('associations')
