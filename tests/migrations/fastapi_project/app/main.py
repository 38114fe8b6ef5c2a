"""A small FastAPI service over SQLAlchemy: users and their notes."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from .models import Note, User


class UserIn(BaseModel):
    name: str
    email: str


def create_app(database_url: str) -> FastAPI:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    sessions = sessionmaker(engine)
    app = FastAPI()

    def session() -> Iterator[Session]:
        with sessions() as s:
            yield s

    DB = Annotated[Session, Depends(session)]

    @app.post("/users", status_code=201)
    def create_user(body: UserIn, db: DB) -> dict[str, object]:
        user = User(name=body.name, email=body.email)
        db.add(user)
        db.commit()
        return {"id": user.id, "name": user.name}

    @app.get("/users/{user_id}")
    def get_user(user_id: int, db: DB) -> dict[str, object]:
        user = db.get(User, user_id)
        if user is None:
            raise HTTPException(404)
        notes = db.scalars(select(Note.body).where(Note.user_id == user_id)).all()
        return {"id": user.id, "name": user.name, "notes": list(notes)}

    app.state.engine = engine
    return app
